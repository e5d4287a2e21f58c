"""Metric analysis between waves (issue 20): the checks a deploy asks for, their queries' templating, the
providers that measure them (Prometheus, CloudWatch, HTTP), the judgement (thresholds, and the upgraded
customers compared with those still on the old version) and the record of every measurement.

No data, too little data or a provider error is INCONCLUSIVE: it never passes a gate."""
