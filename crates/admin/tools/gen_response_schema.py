#!/usr/bin/env python3
"""Writes src/client/guard_schema.rs: the wire layout of every response the admin client decodes,
read from kafka-protocol 0.18's generated decoders (src/messages/*_response.rs).

kafka-protocol sizes vectors from element counts read off the wire before reading the elements,
so a small malformed response could make it allocate without bound. src/client/guard.rs walks a
response body with this table first and refuses counts the remaining bytes cannot hold.

Usage: tools/gen_response_schema.py ~/.cargo/registry/src/*/kafka-protocol-0.18.0/src/messages \
           > src/client/guard_schema.rs
"""
import re
import sys

# (api key, file stem) of the responses decoded by the admin client, plus the consumer
# protocol assignment found inside DescribeGroups member data (pseudo key -1).
MESSAGES = [
    (18, "api_versions_response"), (3, "metadata_response"), (2, "list_offsets_response"),
    (1, "fetch_response"), (10, "find_coordinator_response"), (9, "offset_fetch_response"),
    (8, "offset_commit_response"), (47, "offset_delete_response"),
    (15, "describe_groups_response"), (16, "list_groups_response"),
    (42, "delete_groups_response"), (-1, "consumer_protocol_assignment"),
    # Not used by the admin commands, but reachable through the public `Connection` (tests and
    # benches create topics, produce and join groups with it).
    (0, "produce_response"), (19, "create_topics_response"), (11, "join_group_response"),
    (14, "sync_group_response"),
]

WIRE = {
    "Int8": "I8", "Int16": "I16", "Int32": "I32", "Int64": "I64", "UInt16": "U16",
    "Float64": "F64", "Boolean": "Bool", "Uuid": "Uuid", "UnsignedVarInt": "UVarint",
    "String": "Str", "CompactString": "CStr", "Bytes": "Bytes", "CompactBytes": "CBytes",
}


def braced(text, start):
    """text[start] is '{': returns (contents, index just past the matching '}')."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:i], i + 1
    raise ValueError("unbalanced braces")


def holds(condition, version):
    py = condition.replace("&&", " and ").replace("||", " or ")
    return bool(eval(py, {}, {"version": version}))


def select(expr, version):
    """Resolves `if C { A } else if D { B } else { E }` chains for one version."""
    expr = expr.strip()
    while expr.startswith("if "):
        open_at = expr.index("{")
        then, after = braced(expr, open_at)
        rest = expr[after:].strip()
        if holds(expr[3:open_at], version):
            expr = then.strip()
            continue
        if not rest.startswith("else"):
            return ""
        rest = rest[4:].strip()
        if rest.startswith("{"):
            expr = braced(rest, 0)[0].strip()
        else:
            expr = rest
    return expr


def wire_kind(leaf, rust_type):
    """The table entry for a decode expression, or None when nothing is read."""
    m = re.search(r"types::(\w+)(?:\(types::(\w+)(?:\s*\{\s*version\s*\})?\))?(?:\s*\{\s*version\s*\})?\.decode", leaf)
    if not m:
        return None
    outer, inner = m.group(1), m.group(2)
    struct_name = re.findall(r"\w+", rust_type)[-1] if rust_type else None
    if outer in ("Array", "CompactArray"):
        elem = f'Elem::Struct("{struct_name}")' if inner == "Struct" else f"Elem::Prim(&Kind::{WIRE[inner]})"
        return f"Kind::{'CArray' if outer == 'CompactArray' else 'Array'}({elem})"
    if outer in ("Struct", "OptionStruct"):
        return f'Kind::{outer}("{struct_name}")'
    return f"Kind::{WIRE[outer]}"


def statement_end(body, start):
    depth = 0
    for i in range(start, len(body)):
        c = body[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == ";" and depth == 0:
            return i
    raise ValueError("no statement end")


def field_types(text):
    out = {}
    for m in re.finditer(r"pub struct (\w+) \{", text):
        body, _ = braced(text, m.end() - 1)
        out[m.group(1)] = dict(re.findall(r"pub (\w+): ([^\n]+),\n", body))
    return out


def structs_of(path):
    text = open(path).read()
    types = field_types(text)
    result = []
    for m in re.finditer(r"impl Decodable for (\w+) \{", text):
        name = m.group(1)
        body, _ = braced(text, m.end() - 1)
        rng = re.search(r"if version < (\d+) \|\| version > (\d+)", body)
        if rng:
            lo, hi = int(rng.group(1)), int(rng.group(2))
        else:
            lo = hi = int(re.search(r"if version != (\d+)", body).group(1))
        versions = range(lo, hi + 1)
        fields = []
        for fm in re.finditer(r"\n        let (\w+) = ", body):
            fname = fm.group(1)
            if fname == "num_tagged_fields":
                continue
            expr = body[fm.end():statement_end(body, fm.end())]
            rust_type = types[name].get(fname, "")
            fields.append((None, fname, {v: wire_kind(select(expr, v), rust_type) for v in versions}))
        flex = None
        tm = re.search(r"\n        if version >= (\d+) \{\n            let num_tagged_fields", body)
        if tm:
            flex = int(tm.group(1))
            mm = re.search(r"match tag \{", body)
            if mm:
                arms, _ = braced(body, mm.end() - 1)
                for am in re.finditer(r"\n\s*(\d+) => \{", arms):
                    arm, _ = braced(arms, am.end() - 1)
                    per = {}
                    for v in versions:
                        if v < flex:
                            continue
                        assign = re.match(r"(\w+) = (.*)", select(arm, v), re.S)
                        per[v] = wire_kind(assign.group(2), types[name].get(assign.group(1), "")) if assign else None
                    fields.append((int(am.group(1)), "tagged", per))
        result.append((name, flex, fields))
    return result


def spans(per_version):
    """[(first, last, kind)] over consecutive versions with the same kind."""
    out = []
    for v in sorted(per_version):
        k = per_version[v]
        if k is None:
            continue
        if out and out[-1][1] == v - 1 and out[-1][2] == k:
            out[-1] = (out[-1][0], v, k)
        else:
            out.append((v, v, k))
    return out


def main():
    src = sys.argv[1]
    w = sys.stdout.write
    w("// @generated by tools/gen_response_schema.py from kafka-protocol 0.18's decoders.\n")
    w("// Wire layout of every response the admin client decodes. Do not edit by hand.\n")
    w("use super::guard::{Elem, Field, Kind, Layout};\n\n")
    w("/// (api key, layouts; the first is the top-level message). Key -1 is the consumer\n")
    w("/// protocol assignment carried in DescribeGroups member data.\n")
    w("pub(super) static LAYOUTS: &[(i16, &[Layout])] = &[\n")
    for key, stem in MESSAGES:
        structs = structs_of(f"{src}/{stem}.rs")
        # The top-level message goes first.
        top = "".join(part.capitalize() for part in stem.split("_"))
        structs.sort(key=lambda s: s[0] != top)
        assert structs[0][0] == top, (stem, [s[0] for s in structs])
        w(f"    ({key}, &[\n")
        for name, flex, fields in structs:
            flex_s = f"Some({flex})" if flex is not None else "None"
            w(f'        Layout {{ name: "{name}", flex: {flex_s}, fields: &[\n')
            for tag, fname, per in fields:
                tag_s = f"Some({tag})" if tag is not None else "None"
                for a, b, k in spans(per):
                    w(f"            Field {{ tag: {tag_s}, min: {a}, max: {b}, kind: {k} }}, // {fname}\n")
            w("        ] },\n")
        w("    ]),\n")
    w("];\n")


main()
