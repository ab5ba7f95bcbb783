"""Validate a `gauntlet bom` document against the official CycloneDX 1.6 JSON schema (strict).

    gauntlet bom SUITE.toml > bom.json
    python harness/tests/interop/validate_cyclonedx.py bom.json

Needs `pip install 'cyclonedx-python-lib[json-validation]'` (it ships the schemas). A negative
control (the same document with an invalid component type) must fail, so a validator that
accepts anything cannot pass this script.
"""

import json
import sys

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator


def main():
    validator = JsonStrictValidator(SchemaVersion.V1_6)
    with open(sys.argv[1]) as bom_file:
        text = bom_file.read()
    error = validator.validate_str(text)
    if error is not None:
        print(f"{sys.argv[1]}: not valid CycloneDX 1.6: {error}")
        sys.exit(1)
    broken = json.loads(text)
    broken["components"][0]["type"] = "not-a-component-type"
    if validator.validate_str(json.dumps(broken)) is None:
        print("negative control passed validation: the validator is not checking")
        sys.exit(1)
    components = json.loads(text)["components"]
    print(f"{sys.argv[1]}: valid CycloneDX 1.6, {len(components)} components")


if __name__ == "__main__":
    main()
