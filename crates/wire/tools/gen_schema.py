#!/usr/bin/env python3
"""Writes src/schema.rs of waterline-wire: the wire layout of every request the broker decodes
and every response the admin client decodes, read from kafka-protocol 0.18's generated decoders
(src/messages/*_request.rs, *_response.rs).

Why: kafka-protocol sizes vectors from element counts read off the wire before reading the
elements (`Vec::with_capacity(n)`), so a small malformed message claiming 2^31 elements makes it
allocate without bound and abort. waterline-wire walks a body with these layouts first and
refuses counts the remaining bytes cannot hold.

How the layouts are read: for every `impl Decodable for X`, each `let field = <expr>;` statement
is resolved per version (the `if version ...` chains are evaluated for each version in the
struct's range) down to the `types::...::decode` call, which gives the wire type; consecutive
versions with the same type are merged into one row. Known tagged fields come from the
`match tag { n => ... }` arms. The output is deterministic: running it twice on the same
kafka-protocol source gives the same file.

Usage (from crates/wire):
    tools/gen_schema.py ~/.cargo/registry/src/*/kafka-protocol-0.18.0/src/messages > src/schema.rs

After a kafka-protocol upgrade, or when the broker serves (or the admin client decodes) a new
API: add it to REQUESTS / RESPONSES below, regenerate, and run `cargo test -p waterline-wire`
(every message encoded by kafka-protocol must walk to its last byte).
"""
import re
import sys

# (api key, file stem) of every request the broker may decode.
REQUESTS = [
    (0, "produce_request"), (1, "fetch_request"), (2, "list_offsets_request"),
    (3, "metadata_request"), (8, "offset_commit_request"), (9, "offset_fetch_request"),
    (10, "find_coordinator_request"), (11, "join_group_request"), (12, "heartbeat_request"),
    (13, "leave_group_request"), (14, "sync_group_request"), (15, "describe_groups_request"),
    (16, "list_groups_request"), (18, "api_versions_request"), (19, "create_topics_request"),
    (20, "delete_topics_request"), (22, "init_producer_id_request"),
    (32, "describe_configs_request"), (37, "create_partitions_request"),
    (42, "delete_groups_request"), (47, "offset_delete_request"),
    (21, "delete_records_request"), (33, "alter_configs_request"),
    (44, "incremental_alter_configs_request"),
    # Transactions.
    (24, "add_partitions_to_txn_request"), (25, "add_offsets_to_txn_request"),
    (26, "end_txn_request"), (28, "txn_offset_commit_request"),
    (61, "describe_producers_request"), (65, "describe_transactions_request"),
    (66, "list_transactions_request"), (23, "offset_for_leader_epoch_request"),
    (35, "describe_log_dirs_request"),
    # Authentication.
    (17, "sasl_handshake_request"), (36, "sasl_authenticate_request"),
    (50, "describe_user_scram_credentials_request"),
    (51, "alter_user_scram_credentials_request"),
]

# (api key, file stem) of every response the admin client decodes, plus the consumer protocol
# assignment carried inside DescribeGroups member data (pseudo key -1).
RESPONSES = [
    (18, "api_versions_response"), (3, "metadata_response"), (2, "list_offsets_response"),
    (1, "fetch_response"), (10, "find_coordinator_response"), (9, "offset_fetch_response"),
    (8, "offset_commit_response"), (47, "offset_delete_response"),
    (15, "describe_groups_response"), (16, "list_groups_response"),
    (42, "delete_groups_response"), (-1, "consumer_protocol_assignment"),
    # Not used by the admin commands, but reachable through the admin client's public
    # `Connection` (tests and benches create topics, produce and join groups with it).
    (0, "produce_response"), (19, "create_topics_response"), (11, "join_group_response"),
    (14, "sync_group_response"),
    # `waterline topics`.
    (20, "delete_topics_response"), (32, "describe_configs_response"),
    (33, "alter_configs_response"), (44, "incremental_alter_configs_response"),
    (37, "create_partitions_response"), (21, "delete_records_response"),
    (35, "describe_log_dirs_response"),
    # SASL authentication and `waterline users`.
    (17, "sasl_handshake_response"), (36, "sasl_authenticate_response"),
    (50, "describe_user_scram_credentials_response"),
    (51, "alter_user_scram_credentials_response"),
]

WIRE = {
    "Int8": "I8", "Int16": "I16", "Int32": "I32", "Int64": "I64", "UInt16": "U16",
    "Float64": "F64", "Boolean": "Bool", "Uuid": "Uuid", "UnsignedVarInt": "UVarint",
    "String": "Str", "CompactString": "CStr", "Bytes": "Bytes", "CompactBytes": "CBytes",
}


def braced(text, start):
    """text[start] is '{': returns (contents, index just past the matching '}')."""
    if text[start] != "{":
        raise ValueError(f"expected '{{' at {text[start:start + 40]!r}")
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
    """Evaluates a Rust version condition (`version >= 3 && version <= 8`) for one version."""
    py = condition.replace("&&", " and ").replace("||", " or ")
    return bool(eval(py, {}, {"version": version}))


def select(expr, version):
    """Resolves `if C { A } else if D { B } else { E }` chains for one version: the leaf text,
    or "" when no branch applies."""
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
        expr = braced(rest, 0)[0].strip() if rest.startswith("{") else rest
    return expr


def wire_kind(leaf, rust_type):
    """The Rust `Kind` for a decode expression, or None when nothing is read in that version."""
    m = re.search(
        r"types::(\w+)(?:\(types::(\w+)(?:\s*\{\s*version\s*\})?\))?(?:\s*\{\s*version\s*\})?\.decode",
        leaf,
    )
    if not m:
        return None
    outer, inner = m.group(1), m.group(2)
    # Struct element types are named by the field's Rust type (`Vec<FetchTopic>` -> FetchTopic).
    struct_name = re.findall(r"\w+", rust_type)[-1] if rust_type else None
    if outer in ("Array", "CompactArray"):
        elem = f'Elem::Struct("{struct_name}")' if inner == "Struct" else f"Elem::Prim(&Kind::{WIRE[inner]})"
        return f"Kind::{'CArray' if outer == 'CompactArray' else 'Array'}({elem})"
    if outer in ("Struct", "OptionStruct"):
        return f'Kind::{outer}("{struct_name}")'
    if outer not in WIRE:
        raise ValueError(f"unknown decoder {leaf!r}")
    return f"Kind::{WIRE[outer]}"


def statement_end(body, start):
    """Index of the `;` ending the statement that starts at `start` (at brace depth 0)."""
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
    """{struct name: {field name: Rust type}} of every `pub struct` in a message file."""
    out = {}
    for m in re.finditer(r"pub struct (\w+) \{", text):
        body, _ = braced(text, m.end() - 1)
        out[m.group(1)] = dict(re.findall(r"pub (\w+): ([^\n]+),\n", body))
    return out


def structs_of(path):
    """[(struct name, first flexible version or None, [(tag or None, field name, {version:
    kind or None})])] in file order."""
    with open(path) as f:
        text = f.read()
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
        # Messages flexible from their first version read tagged fields unconditionally.
        always = re.search(r"\n        let num_tagged_fields = ", body)
        if tm or always:
            flex = int(tm.group(1)) if tm else lo
            mm = re.search(r"match tag \{", body)
            if mm:
                arms, _ = braced(body, mm.end() - 1)
                for am in re.finditer(r"\n\s*(\d+) => \{", arms):
                    arm, _ = braced(arms, am.end() - 1)
                    per, fname = {}, "?"
                    for v in versions:
                        if v < flex:
                            continue
                        assign = re.match(r"(\w+) = (.*)", select(arm, v), re.S)
                        if assign:
                            fname = assign.group(1)
                            per[v] = wire_kind(assign.group(2), types[name].get(fname, ""))
                        else:
                            per[v] = None
                    fields.append((int(am.group(1)), fname, per))
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


def table(w, static, doc, messages, src):
    for line in doc:
        w(f"/// {line}\n")
    w(f"pub(crate) static {static}: &[(i16, &[StructSchema])] = &[\n")
    for key, stem in messages:
        structs = structs_of(f"{src}/{stem}.rs")
        # The top-level message goes first; the rest keep file order.
        top = "".join(part.capitalize() for part in stem.split("_"))
        structs.sort(key=lambda s: s[0] != top)
        if structs[0][0] != top:
            raise ValueError(f"{stem}: no struct {top}")
        w(f"    ({key}, &[\n")
        for name, flex, fields in structs:
            flex_s = f"Some({flex})" if flex is not None else "None"
            w(f'        StructSchema {{ name: "{name}", flex: {flex_s}, fields: &[\n')
            for tag, fname, per in fields:
                tag_s = f"Some({tag})" if tag is not None else "None"
                note = f"{fname} (tagged)" if tag is not None else fname
                for a, b, k in spans(per):
                    w(f"            Field {{ tag: {tag_s}, min: {a}, max: {b}, kind: {k} }}, // {note}\n")
            w("        ] },\n")
        w("    ]),\n")
    w("];\n")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gen_schema.py <kafka-protocol-0.18 src/messages dir> > src/schema.rs")
    src = sys.argv[1]
    w = sys.stdout.write
    w("// @generated by tools/gen_schema.py from kafka-protocol 0.18's message decoders.\n")
    w("// Do not edit by hand: change the API lists in the script and regenerate (see its header).\n")
    w("//! Wire layouts of the requests the broker decodes and the responses the admin client\n")
    w("//! decodes: per struct, each field's wire type, the versions it is present in, and the\n")
    w("//! known tagged fields. Each entry is (api key, structs); the first struct is the\n")
    w("//! top-level message and nested structs are referred to by name within the entry.\n")
    w("use crate::{Elem, Field, Kind, StructSchema};\n\n")
    table(w, "REQUESTS", ["Request layouts, by API key."], REQUESTS, src)
    w("\n")
    table(
        w,
        "RESPONSES",
        ["Response layouts, by API key. Key -1 ([`crate::CONSUMER_ASSIGNMENT`]) is the consumer",
         "protocol assignment carried in DescribeGroups member data."],
        RESPONSES,
        src,
    )


main()
