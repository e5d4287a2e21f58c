// The API reference (/docs): Swagger UI over this server's OpenAPI document. No validator badge (it would
// send the document to validator.swagger.io); "Try it out" calls this origin (the document's only server).
/* global SwaggerUIBundle */
window.ui = SwaggerUIBundle({
  url: "/docs/openapi.json",
  dom_id: "#swagger-ui",
  validatorUrl: null,
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
