#!/usr/bin/env python3
"""Extracts the wire layout of the request messages the broker decodes from kafka-protocol's
generated message definitions and writes it as a Rust table (src/guard/schema.rs).

The table lists, per struct, each field's wire type and the versions it is present in, plus the
known tagged fields. src/guard.rs walks a request with it before kafka-protocol decodes it, to
refuse element counts the frame cannot hold (kafka-protocol 0.18 allocates them up front).

Usage: gen_request_schema.py <kafka-protocol-0.18 src/messages dir> > src/guard/schema.rs
"""
import re
import sys

# (api key, request file stem) of every API the broker may decode.
APIS = [
    (0, "produce"), (1, "fetch"), (2, "list_offsets"), (3, "metadata"),
    (8, "offset_commit"), (9, "offset_fetch"), (10, "find_coordinator"), (11, "join_group"),
    (12, "heartbeat"), (13, "leave_group"), (14, "sync_group"), (15, "describe_groups"),
    (16, "list_groups"), (18, "api_versions"), (19, "create_topics"), (20, "delete_topics"),
    (22, "init_producer_id"), (32, "describe_configs"), (37, "create_partitions"),
    (42, "delete_groups"), (47, "offset_delete"),
]

PRIMS = {
    "Int8": "I8", "Int16": "I16", "Int32": "I32", "Int64": "I64", "UInt16": "U16",
    "Float64": "F64", "Boolean": "Bool", "Uuid": "Uuid", "UnsignedVarInt": "UVarint",
    "String": "Str", "CompactString": "CStr", "Bytes": "Bytes", "CompactBytes": "CBytes",
}


def block(text, i):
    """Given text[i] == '{', returns (inner, index after the closing brace)."""
    assert text[i] == "{", text[i:i + 40]
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j], j + 1
    raise ValueError("unbalanced")


def cond_true(cond, v):
    expr = cond.replace("&&", " and ").replace("||", " or ").replace("version", str(v))
    return bool(eval(expr))


def evaluate(expr, v):
    """Evaluates a nested `if version .. { } else { }` expression for version v: the leaf text."""
    expr = expr.strip()
    if expr.startswith("if "):
        k = expr.index("{")
        cond = expr[3:k]
        inner, end = block(expr, k)
        rest = expr[end:].strip()
        if cond_true(cond, v):
            return evaluate(inner, v)
        if rest.startswith("else"):
            rest = rest[4:].strip()
            if rest.startswith("if "):
                return evaluate(rest, v)
            inner2, _ = block(rest, 0)
            return evaluate(inner2, v)
        return ""
    return expr


def leaf_kind(leaf, field_type):
    """Maps a decode expression to a Kind in the Rust table, or None if the field is absent."""
    m = re.search(r"types::(\w+)(\(types::(\w+)(\s*\{\s*version\s*\})?\))?(\s*\{\s*version\s*\})?\.decode", leaf)
    if not m:
        return None
    outer, inner, struct_inner, struct_outer = m.group(1), m.group(3), m.group(4), m.group(5)
    elem = re.findall(r"\w+", field_type)[-1] if field_type else None
    if outer in ("Array", "CompactArray"):
        compact = outer == "CompactArray"
        if inner == "Struct":
            e = f"Elem::Struct({elem!r})"
        else:
            e = f"Elem::Prim(&Kind::{PRIMS[inner]})"
        return ("CArray" if compact else "Array", e)
    if outer == "Struct":
        return ("Struct", elem)
    if outer == "OptionStruct":
        return ("OptionStruct", elem)
    if outer in PRIMS:
        return (PRIMS[outer], None)
    raise ValueError(f"unknown decoder {leaf!r}")


def struct_field_types(text):
    out = {}
    for m in re.finditer(r"pub struct (\w+) \{", text):
        body, _ = block(text, m.end() - 1)
        out[m.group(1)] = dict(re.findall(r"pub (\w+): ([^\n]+),\n", body))
    return out


def parse_file(path):
    text = open(path).read()
    types = struct_field_types(text)
    structs = {}
    for m in re.finditer(r"impl Decodable for (\w+) \{", text):
        name = m.group(1)
        body, _ = block(text, m.end() - 1)
        vm = re.search(r"if version < (\d+) \|\| version > (\d+)", body) or re.search(r"if version != (\d+)", body)
        vmin = int(vm.group(1))
        vmax = int(vm.group(2)) if vm.lastindex == 2 else vmin
        fields = []
        for fm in re.finditer(r"\n        let (\w+) = ", body):
            fname = fm.group(1)
            if fname == "num_tagged_fields":
                continue
            start = fm.end()
            # The expression ends at the `;` closing the statement at brace depth 0.
            depth, j = 0, start
            while True:
                c = body[j]
                if c == "{":
                    depth += 1
                elif c == "}":
                    depth -= 1
                elif c == ";" and depth == 0:
                    break
                j += 1
            expr = body[start:j]
            ftype = types[name].get(fname, "")
            per_version = {}
            for v in range(vmin, vmax + 1):
                per_version[v] = leaf_kind(evaluate(expr, v), ftype)
            fields.append((fname, per_version))
        flex = None
        tagged = []
        tm = re.search(r"\n        if version >= (\d+) \{\n            let num_tagged_fields", body)
        if tm:
            flex = int(tm.group(1))
            mm = re.search(r"match tag \{", body)
            if mm:
                arms, _ = block(body, mm.end() - 1)
                for am in re.finditer(r"\n\s*(\d+) => \{", arms):
                    tag = int(am.group(1))
                    arm, _ = block(arms, am.end() - 1)
                    per_version = {}
                    for v in range(max(vmin, flex), vmax + 1):
                        leaf = evaluate(arm, v)
                        fm2 = re.match(r"(\w+) = (.*)", leaf.strip(), re.S)
                        per_version[v] = leaf_kind(fm2.group(2), types[name].get(fm2.group(1), "")) if fm2 else None
                    tagged.append((tag, per_version))
        structs[name] = (vmin, vmax, flex, fields, tagged)
    return structs


def kind_rust(k):
    tag, arg = k
    if tag in ("Array", "CArray"):
        return f"Kind::{tag}({arg})"
    if tag in ("Struct", "OptionStruct"):
        return f"Kind::{tag}({arg!r})"
    return f"Kind::{tag}"


def ranges(per_version):
    """Groups consecutive versions with the same kind: [(min, max, kind)]."""
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
    print("// @generated by tools/gen_request_schema.py from kafka-protocol 0.18's message")
    print("// definitions: the wire layout of every request the broker decodes. Do not edit.")
    print("use super::{Elem, Field, Kind, StructSchema};")
    print()
    print("/// (api key, struct schemas of that request; the first is the top-level request).")
    print("pub(super) static REQUESTS: &[(i16, &[StructSchema])] = &[")
    for key, stem in APIS:
        structs = parse_file(f"{src}/{stem}_request.rs")
        top = [n for n in structs if n.endswith("Request")]
        order = top + [n for n in structs if n not in top]
        print(f"    ({key}, &[")
        for n in order:
            vmin, vmax, flex, fields, tagged = structs[n]
            flex_s = f"Some({flex})" if flex is not None else "None"
            print(f"        StructSchema {{ name: {n!r}, flex: {flex_s}, fields: &[".replace("'", '"'))
            for fname, pv in fields:
                for a, b, k in ranges(pv):
                    print(f"            Field {{ tag: None, min: {a}, max: {b}, kind: {kind_rust(k)} }}, // {fname}".replace("'", '"'))
            for tag, pv in tagged:
                for a, b, k in ranges(pv):
                    print(f"            Field {{ tag: Some({tag}), min: {a}, max: {b}, kind: {kind_rust(k)} }},".replace("'", '"'))
            print("        ] },")
        print("    ]),")
    print("];")


main()
