#!/usr/bin/env python3
"""Write the `hostile-*` seeds of fuzz/seeds/pipeline: small members (under
the 4,096-byte -max_len of the documented runs) of each family of hostile
build files from issue 11. tests/hostile.rs runs the full-size versions
(10,000 levels, 10,000 variables, ...) against the binary.

    python3 fuzz/gen_hostile_seeds.py      # from the repository root
"""
import os

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds", "pipeline")

def seeds():
    # Nesting past the 200-level cap: target body, top level, one line,
    # matrix, contexts, comments.
    yield "nest-target", 'target "a" {\n' + "x {\n" * 210 + "}\n" * 210 + "}\n"
    yield "nest-oneline", "a { " * 210 + "}" * 210
    yield "nest-matrix", 'target "a" {\n matrix {\n' + "x {\n" * 205 + "}\n" * 205 + "}\n}\n"
    yield "nest-contexts", 'target "a" {\n contexts {\n' + "b {\n" * 205 + "}\n" * 205 + "}\n}\n"
    yield "nest-comments", "/*" * 210 + "*/" * 210 + '\ntarget "a" {}\n'
    yield "nest-cr-comment", "// c\r" + "a {\n" * 205
    # Just at the cap (parsed; ordinary errors).
    yield "nest-at-cap", "a {\n" * 200 + "}\n" * 200
    # Variable chains both ways, a cycle, doubling values.
    yield "var-chain-back", "".join(f'variable "v{i}" default="${{v{i+1}}}"\n' for i in range(80)) + \
        'variable "v80" default="end"\ntarget "a" { tags "${v0}" }\ngroup "default" { targets "a" }\n'
    yield "var-cycle", "".join(f'variable "v{i}" default="${{v{(i+1) % 40}}}"\n' for i in range(40)) + \
        'target "a" { tags "${v0}" }\n'
    yield "var-double", 'variable "v0" default="xx"\n' + "".join(
        f'variable "v{i}" default="${{v{i-1}}}${{v{i-1}}}"\n' for i in range(1, 24)) + \
        'target "a" { tags "${v23}" }\ngroup "default" { targets "a" }\n'
    # Groups: 30 levels of diamonds (2^30 paths), a cycle.
    yield "groups-diamond", 'target "t" {}\n' + "".join(
        f'group "g{i}" {{ targets "g{i+1}" "h{i+1}"; }}\ngroup "h{i}" {{ targets "g{i+1}" "h{i+1}"; }}\n'
        for i in range(30)) + 'group "g30" { targets "t"; }\ngroup "h30" { targets "t"; }\n' + \
        'group "default" { targets "g0"; }\n'
    yield "groups-cycle-long", "".join(f'group "g{i}" {{ targets "g{(i+1) % 60}"; }}\n' for i in range(60))
    # Inheritance and dependencies declared child first, and cycles.
    yield "inherits-chain-back", "".join(f'target "t{i}" {{ inherits "t{i+1}"; }}\n' for i in range(80)) + \
        'target "t80" { tags "x:1"; }\ngroup "default" { targets "t0"; }\n'
    yield "deps-chain-back", "".join(
        f'target "t{i}" {{\n contexts {{ d "target:t{i+1}"; }}\n}}\n' for i in range(60)) + \
        'target "t60" {}\ngroup "default" { targets "t0"; }\n'
    yield "deps-cycle-long", "".join(
        f'target "t{i}" {{\n contexts {{ d "target:t{(i+1) % 50}"; }}\n}}\n' for i in range(50)) + \
        'group "default" { targets "t0"; }\n'
    # Amplification: a large value inherited / copied by a matrix.
    yield "inherits-amplify", 'variable "X" default="' + "x" * 200 + '"\n' + \
        'variable "Y" default="${X}${X}${X}${X}${X}${X}${X}${X}"\n' + \
        'target "_b" { description "${Y}${Y}${Y}${Y}"; }\n' + \
        "".join(f'target "t{i}" {{ inherits "_b"; }}\n' for i in range(40)) + 'group "default" { targets "t0"; }\n'
    yield "matrix-amplify", 'variable "L" type="list" default="' + ",".join(str(i) for i in range(100)) + '"\n' + \
        'target "t-${a}-${b}" {\n matrix { a "${L}"; b "${L}"; }\n}\n'
    # Names: paths, spaces, dots, control characters (raw and escaped),
    # matrix expansions, interpolated names, empty.
    yield "names", 'target "../../etc/passwd" {}\n' \
        'target "red\x1b[31m" {}\n' \
        'target "x\\u{9b}y" {}\n' \
        'group "a b" { targets "x"; }\n' \
        'variable "A.B" default="q"\n' \
        'variable "N" default="a\\u{202e}b"\n' \
        'target "n-${N}" {}\n' \
        'target "svc-${v}" {\n matrix { v "ok" "a/b" "\\u{7}"; }\n}\n' \
        'target "" {}\n'
    # Control characters in values, file names and messages.
    yield "controls", 'variable "V" default="v\x1b]0;t\x07" description="d\x1b[2J"\n' \
        'target "a" {\n description "r\x1b[31m \xc2\x9b6n \xe2\x80\xaet"\n tags "r/a:x\x7f"\n network "h\x1b[2J"\n}\n' \
        'group "default" { targets "a"; }\n'

    yield "controls-valid", 'variable "V" default="v\x1b]0;t\x07"\n' \
        'target "a" {\n description "r\x1b[31m \xc2\x9b6n \xe2\x80\xaet ${V}"\n tags "r/a:x"\n}\n' \
        'group "default" { targets "a"; }\n'

def main():
    for name, text in seeds():
        data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
        # Strings above hold UTF-8 bytes as latin-1 code points where noted.
        if "\xc2" in text or "\xe2" in text:
            data = text.encode("latin-1")
        assert len(data) <= 4096, (name, len(data))
        with open(os.path.join(OUT, f"hostile-{name}.kdl"), "wb") as f:
            f.write(data)
    # Not UTF-8: a bad byte on line 3.
    with open(os.path.join(OUT, "hostile-not-utf8.kdl"), "wb") as f:
        f.write(b'target "a" {\n  tags "ok"\n  tags "\xc3\x28 \xff"\n}\n')

if __name__ == "__main__":
    main()
