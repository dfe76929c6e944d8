"""Print the CloudFormation template the SAM transform makes of template.yaml, as JSON.

Run with the SAM CLI's interpreter (it has samtranslator, the library `sam deploy` uses):
``.cache/sam-venv/bin/python tests/integration/sam_transform.py TEMPLATE PARAMETERS_JSON``.
Code locations become placeholder S3 URIs, as `sam package` would make them; nothing is sent
anywhere.
"""

import json
import sys

# samtranslator lives in the SAM CLI's virtualenv, not in the one mypy checks.
from samtranslator.translator.transform import transform  # type: ignore[import-not-found]
from samtranslator.yaml_helper import yaml_parse  # type: ignore[import-not-found]


class NoManagedPolicies:
    """The template names managed policies by ARN only, so no IAM lookup is needed."""

    def load(self) -> dict:
        return {}


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as source:
        template = yaml_parse(source.read())
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str):
                props[key] = "s3://artifacts/placeholder.zip"
    print(json.dumps(transform(template, json.loads(sys.argv[2]), NoManagedPolicies())))


if __name__ == "__main__":
    main()
