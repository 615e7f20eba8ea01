#!/usr/bin/env python3
"""Re-record src/expr/funcs/testdata/recorded.txt from the real bake.

    python3 src/expr/funcs/testdata/record.py   # needs `docker buildx bake` (0.13.1 here)

Every non-comment line of recorded.txt is `EXPR<TAB>RESULT`; only EXPR is read.
For each EXPR this writes a bake file

    target "t" { args = { V = "${jsonencode(EXPR)}" } }

runs `docker buildx bake -f FILE --print t` and records `=> <V as a JSON
string>` (bake's jsonencode of the value: its type and number formatting)
or `!! <bake's error line>` when bake fails. Comment (`#`) and blank lines
are kept. The unit tests (tests.rs) evaluate the same `jsonencode(EXPR)`
with our functions and compare.
"""
import json, os, subprocess, sys, tempfile

here = os.path.dirname(os.path.abspath(__file__))
path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "recorded.txt")
out = []
with open(path) as f:
    lines = f.read().splitlines()
with tempfile.TemporaryDirectory() as d:
    hcl = os.path.join(d, "docker-bake.hcl")
    for line in lines:
        if not line.strip() or line.startswith("#"):
            out.append(line)
            continue
        expr = line.split("\t", 1)[0]
        with open(hcl, "w") as f:
            f.write('target "t" {\n  args = {\n    V = "${jsonencode(%s)}"\n  }\n}\n' % expr)
        p = subprocess.run(["docker", "buildx", "bake", "-f", hcl, "--print", "t"],
                           capture_output=True, cwd=d)
        stdout = p.stdout.decode("utf-8", "replace")
        stderr = p.stderr.decode("utf-8", "replace")
        if p.returncode == 0:
            v = json.loads(stdout)["target"]["t"]["args"]["V"]
            out.append(expr + "\t=> " + json.dumps(v, ensure_ascii=False))
        else:
            err = [l for l in stderr.splitlines() if l.startswith("ERROR")]
            msg = (err[-1] if err else stderr.strip().splitlines()[-1]).replace(d + "/", "")
            out.append(expr + "\t!! " + msg)
        print(out[-1], file=sys.stderr)
with open(path, "w") as f:
    f.write("\n".join(out) + "\n")
