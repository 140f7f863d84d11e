"""The CustomResourceDefinitions of xdsr.io/v1alpha1, derived from the documents.

Each kind's spec (and the LoadBalancer's status) is exactly the JSON of a
document of xdsr.model, so its schema is that model's JSON schema, turned
into a structural OpenAPI v3 schema (what apiextensions.k8s.io/v1 accepts):
$refs inlined, `X | None` as nullable, anyOf branches of one type merged,
pydantic's additionalProperties: false dropped (pruning does that job),
exclusive bounds in OpenAPI 3.0's form. The limits (port ranges, weights,
enums) are the models' own, so kube-apiserver refuses what the API server
refuses, with the field's path in the message. Keys and the store's layout:
xdsr.store.kubernetes.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from xdsr.model import checks
from xdsr.model.group import Group, LbnRecord, PlacedLoadBalancer
from xdsr.model.loadbalancer import LoadBalancer, LoadBalancerStatus
from xdsr.store.kubernetes import GROUP, VERSION

Schema = dict[str, Any]

_KEEP_FORMATS = {"int32", "int64", "float", "double", "byte", "date", "date-time", "password"}
_DROP = {"title", "default", "examples", "discriminator", "$defs", "definitions"}


def _resolve(node: Any, defs: dict[str, Schema]) -> Any:
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[1]])
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return _resolve({**target, **rest}, defs)
    return {k: _resolve(v, defs) for k, v in node.items()}


def structural(node: Any) -> Any:
    """A pydantic (JSON Schema 2020-12) schema as a Kubernetes structural schema."""
    if isinstance(node, list):
        return [structural(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: Schema = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "format" and value not in _KEEP_FORMATS:
            continue
        if key == "additionalProperties" and value is False:
            continue
        if key == "const":
            out["enum"] = [value]
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
            continue
        out[key] = structural(value)
    branches = out.pop("anyOf", None) or out.pop("oneOf", None)
    if branches is not None:
        nullable = any(b.get("type") == "null" for b in branches)
        rest = [b for b in branches if b.get("type") != "null"]
        if nullable:
            out["nullable"] = True
        if len(rest) == 1:
            merged = rest[0]
        elif rest and all(b.get("type") == rest[0].get("type") and b.get("type") != "object" for b in rest):
            merged = {"type": rest[0]["type"]}
            if rest[0]["type"] == "array":
                merged["items"] = {"x-kubernetes-preserve-unknown-fields": True}
        else:
            merged = {"x-kubernetes-preserve-unknown-fields": True}
        for k, v in merged.items():
            out.setdefault(k, v)
    if "description" in node and isinstance(node["description"], str):
        out["description"] = node["description"]
    return out


def _segment_rule(node: Any) -> None:
    """A segment's id bounded by its type (checks.segment), a rule across two fields that
    the model states in a validator: as value checks in anyOf branches (structural: no
    types in them) and as a CEL rule, whose message kubectl shows."""
    if isinstance(node, list):
        for n in node:
            _segment_rule(n)
        return
    if not isinstance(node, dict):
        return
    props = node.get("properties")
    if (
        isinstance(props, dict)
        and set(props) == {"type", "id"}
        and props["type"].get("enum") == list(checks.SEGMENT_TYPES)
    ):
        overlays = list(checks.OVERLAYS)
        node["anyOf"] = [
            {"properties": {"type": {"enum": ["vlan"]}, "id": {"maximum": checks.MAX_VLAN}}},
            {"required": ["type"], "properties": {"type": {"enum": overlays}, "id": {"minimum": 1}}},
        ]
        node["x-kubernetes-validations"] = [
            {
                "rule": f"has(self.type) && self.type in {overlays} ? "
                f"(has(self.id) && self.id >= 1) : (!has(self.id) || self.id <= {checks.MAX_VLAN})",
                "message": f"a VLAN id is 0-{checks.MAX_VLAN} (0 = untagged), a VNI 1-{checks.MAX_VNI}",
            }
        ]
    for value in node.values():
        _segment_rule(value)


def model_schema(model: type[BaseModel]) -> Schema:
    raw = model.model_json_schema(mode="serialization")
    defs = raw.get("$defs", {})
    out = structural(_resolve(raw, defs))
    _segment_rule(out)
    return out  # type: ignore[no-any-return]


def _condition() -> Schema:
    return {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": {"type": "string", "enum": ["Ready", "Progressing", "Degraded"]},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string", "maxLength": 1024, "pattern": "^([A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?)?$"},
            "message": {"type": "string", "maxLength": 32768},
            "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
        },
    }


def group_status_schema() -> Schema:
    """What `kubectl get lbngroups` shows: written by the operator (conditions: Ready, Progressing, Degraded)."""
    return {
        "type": "object",
        "properties": {
            "nodes": {"type": "integer", "minimum": 0, "description": "live LB nodes of the group"},
            "loadBalancers": {"type": "integer", "minimum": 0, "description": "load balancers placed on the group"},
            "generation": {"type": "integer", "minimum": 0, "description": "the rules' generation pushed to the nodes"},
            "ready": {"type": "string", "description": "nodes at that generation / nodes, e.g. 3/3"},
            "conditions": {
                "type": "array",
                "items": _condition(),
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
        },
    }


def _crd(kind: str, plural: str, short: list[str], spec: Schema, status: Schema | None, columns: list[Schema]) -> dict:
    schema: Schema = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
        },
    }
    version: Schema = {"name": VERSION, "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}
    if status is not None:
        schema["properties"]["status"] = status
        version["subresources"] = {"status": {}}
    version["additionalPrinterColumns"] = [
        *columns,
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "xdsr"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": kind + "List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short,
                "categories": ["xdsr"],
            },
            "versions": [version],
        },
    }


def crds() -> list[dict[str, Any]]:
    group_spec = model_schema(Group)
    return [
        _crd(
            "LoadBalancer",
            "loadbalancers",
            ["xlb"],
            model_schema(LoadBalancer),
            model_schema(LoadBalancerStatus),
            [
                {"name": "VIP", "type": "string", "jsonPath": ".spec.vip_address"},
                {"name": "Group", "type": "string", "jsonPath": ".spec.lbn_group"},
                {"name": "Generation", "type": "integer", "jsonPath": ".spec.generation"},
                {"name": "Observed", "type": "integer", "jsonPath": ".status.observed_generation"},
            ],
        ),
        _crd(
            "LBNGroup",
            "lbngroups",
            ["lbng"],
            group_spec,
            group_status_schema(),
            [
                {"name": "Nodes", "type": "string", "jsonPath": ".spec.lbns"},
                {"name": "Load Balancers", "type": "integer", "jsonPath": ".status.loadBalancers"},
                {"name": "Generation", "type": "integer", "jsonPath": ".status.generation"},
                {"name": "Ready", "type": "string", "jsonPath": ".status.ready"},
                {
                    "name": "Degraded",
                    "type": "string",
                    "jsonPath": '.status.conditions[?(@.type=="Degraded")].reason',
                    "priority": 1,
                },
            ],
        ),
        _crd(
            "LBNGroupRules",
            "lbngrouprules",
            ["lbngr"],
            model_schema(PlacedLoadBalancer),
            None,
            [
                {"name": "Group", "type": "string", "jsonPath": ".metadata.labels.xdsr\\.io/group"},
                {"name": "Generation", "type": "integer", "jsonPath": ".spec.generation"},
            ],
        ),
        _crd(
            "LBNode",
            "lbnodes",
            ["lbn"],
            model_schema(LbnRecord),
            None,
            [
                {"name": "Endpoint", "type": "string", "jsonPath": ".spec.endpoint"},
                {"name": "Group", "type": "string", "jsonPath": ".spec.group"},
                {"name": "Version", "type": "string", "jsonPath": ".spec.version"},
            ],
        ),
        _crd(
            "StoreEntry",
            "storeentries",
            [],
            {
                "type": "object",
                "required": ["data"],
                "properties": {"data": {"type": "string", "format": "byte", "description": "the value, base64"}},
            },
            None,
            [{"name": "Key", "type": "string", "jsonPath": ".metadata.annotations.xdsr\\.io/key"}],
        ),
    ]
