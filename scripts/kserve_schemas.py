"""Refresh deploy/kserve/schemas/ from a KServe git repository (tests/test_deploy.py validates
our KServe manifests against them, offline).

    python scripts/kserve_schemas.py /path/to/kserve/.git --ref v0.20.0

For ClusterServingRuntime and InferenceService it takes the openAPIV3Schema of the served
version from config/crd/full/ at that ref, and keeps only what validates: descriptions are
dropped, and a subschema repeated in the CRD (the container, volume and affinity schemas appear
dozens of times) is stored once under `$defs` and referenced. Both steps leave what the schema
accepts unchanged; the script checks it by validating KServe's own example manifests at that
ref (config/runtimes, docs/samples) against the CRD's schema and against the kept one, and
stops if any verdict differs (also with unknown fields refused, as tests/test_deploy.py does).
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
from pathlib import Path

import jsonschema
import yaml

OUT = Path(__file__).resolve().parent.parent / "deploy" / "kserve" / "schemas"
CRDS = {  # kind -> (CRD file under config/crd/full, version)
    "ClusterServingRuntime": ("serving.kserve.io_clusterservingruntimes.yaml", "v1alpha1"),
    "InferenceService": ("serving.kserve.io_inferenceservices.yaml", "v1beta1"),
}
MIN_SHARED = 1000  # characters of JSON: smaller repeats stay inline, for readability


def git(git_dir: str, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", git_dir, *args], capture_output=True, text=True, check=True).stdout


def without_descriptions(node):
    if isinstance(node, dict):
        return {k: without_descriptions(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [without_descriptions(v) for v in node]
    return node


def _key(node) -> str:
    return json.dumps(node, sort_keys=True, separators=(",", ":"))


def share_repeats(schema: dict) -> dict:
    """Move each subschema that occurs more than once into `$defs`, largest saving first, named
    after the property where it first occurs."""
    defs: dict[str, dict] = {}

    def replace(node, key: str, ref: dict):
        if isinstance(node, dict):
            return ref if _key(node) == key else {k: replace(v, key, ref) for k, v in node.items()}
        if isinstance(node, list):
            return [replace(v, key, ref) for v in node]
        return node

    while True:
        counts: collections.Counter = collections.Counter()
        names: dict[str, str] = {}

        def count(node, name: str) -> None:
            if isinstance(node, dict):
                if "$ref" not in node:
                    key = _key(node)
                    counts[key] += 1
                    names.setdefault(key, name)
                for k, v in node.items():
                    count(v, name if k in ("properties", "items", "additionalProperties") else k)
            elif isinstance(node, list):
                for v in node:
                    count(v, name)

        count([schema, defs], "schema")
        repeats = [k for k, n in counts.items() if n > 1 and len(k) >= MIN_SHARED]
        if not repeats:
            return {**schema, "$defs": defs} if defs else schema
        key = max(repeats, key=lambda k: len(k) * (counts[k] - 1))
        name, suffix = names[key], 2
        while name in defs:
            name, suffix = f"{names[key]}{suffix}", suffix + 1
        ref = {"$ref": f"#/$defs/{name}"}
        schema = replace(schema, key, ref)
        defs = {n: replace(d, key, ref) for n, d in defs.items()}
        defs[name] = json.loads(key)


def strict(node):
    """The schema as the API server applies it with strict field validation (kubectl's default):
    an object with listed properties rejects any other field, unless the CRD marks it
    x-kubernetes-preserve-unknown-fields."""
    if isinstance(node, list):
        return [strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    tightened = {k: (v if k == "properties" else strict(v)) for k, v in node.items()}
    if "properties" in node:
        tightened["properties"] = {name: strict(v) for name, v in node["properties"].items()}
        if "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            tightened["additionalProperties"] = False
    return tightened


def examples(git_dir: str, ref: str, kind: str) -> list[dict]:
    """KServe's own manifests of this kind at `ref`."""
    found = []
    for path in git(git_dir, "ls-tree", "-r", "--name-only", ref, "config/runtimes", "docs/samples").split():
        if path.endswith((".yaml", ".yml")):
            try:
                documents = list(yaml.safe_load_all(git(git_dir, "show", f"{ref}:{path}")))
            except yaml.YAMLError:
                continue  # templates with placeholders
            found += [d for d in documents if isinstance(d, dict) and d.get("kind") == kind]
    return found


def verdicts(schema: dict, documents: list[dict]) -> list[list[str]]:
    validator = jsonschema.Draft202012Validator(schema)
    return [sorted(f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(d)) for d in documents]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("git_dir", help="a KServe repository's git directory")
    parser.add_argument("--ref", default="v0.20.0", help="tag or commit (default: v0.20.0)")
    args = parser.parse_args()
    commit = git(args.git_dir, "rev-parse", f"{args.ref}^{{commit}}").strip()
    for kind, (crd_file, version) in CRDS.items():
        crd = yaml.safe_load(git(args.git_dir, "show", f"{commit}:config/crd/full/{crd_file}"))
        (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
        original = without_descriptions(served["schema"]["openAPIV3Schema"])
        kept = {
            "$comment": (
                f"KServe {args.ref} ({commit}), config/crd/full/{crd_file}: the openAPIV3Schema of {version}, "
                "descriptions dropped, repeated subschemas under $defs. Made by scripts/kserve_schemas.py."
            ),
            **share_repeats(original),
        }
        samples = examples(args.git_dir, commit, kind)
        rejected = verdicts(strict(original), samples)
        if verdicts(original, samples) != verdicts(kept, samples) or rejected != verdicts(strict(kept), samples):
            raise SystemExit(f"{kind}: the kept schema judges KServe's examples differently from the CRD's")
        path = OUT / f"{kind.lower()}-{version}.json"
        path.write_text(json.dumps(kept, indent=1) + "\n")
        print(
            f"{path}: {path.stat().st_size} bytes; same verdicts as the CRD's schema on {len(samples)} KServe examples, "
            f"also with unknown fields refused ({sum(map(bool, rejected))} of them refused then)"
        )


if __name__ == "__main__":
    main()
