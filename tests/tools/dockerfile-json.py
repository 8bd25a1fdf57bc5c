"""Prints a Dockerfile's instructions as JSON, parsed by BuildKit's own parser (the `dockerfile`
package from PyPI wraps it): [{"cmd": "FROM", "flags": [...], "value": [...]}, ...].

Used by tests/tests/manifests/image.rs; run with the interpreter manifest-tools.sh installs."""

import json
import sys

import dockerfile

instructions = [
    {"cmd": c.cmd.upper(), "flags": list(c.flags), "value": list(c.value)}
    for c in dockerfile.parse_file(sys.argv[1])
]
json.dump(instructions, sys.stdout)
