"""Generate the OpenAPI document from the API functions' own routes (`make openapi`)."""

from __future__ import annotations

import json
import sys

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, Server

from upgradectl.local.functions import API_FUNCTIONS, load_function

TITLE = "Customer upgrades API"
VERSION = "1.0.0"


def build_document() -> dict:
    app = APIGatewayRestResolver(enable_validation=True)
    for name in API_FUNCTIONS:
        app.include_router(load_function(name).router)
    schema = app.get_openapi_json_schema(
        title=TITLE,
        version=VERSION,
        summary="Roll a component version out to every customer instance, wave by wave",
        description=(
            "Every route requires AWS Signature Version 4 (API Gateway AWS_IAM authorization). "
            "Upgrade ids are decimal strings; jobId is the Step Functions execution name."
        ),
        servers=[
            Server(url="https://{apiId}.execute-api.{region}.amazonaws.com/v1"),
            Server(url="http://localhost:3100"),
        ],
        security_schemes={
            "sigv4": APIKey(
                name="Authorization",
                in_=APIKeyIn.header,
                description="AWS Signature Version 4 (x-amazon-apigateway-authtype: awsSigv4)",
            )
        },
        security=[{"sigv4": []}],
    )
    return json.loads(schema)


def main() -> int:
    json.dump(build_document(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
