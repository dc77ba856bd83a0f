"""Loads template.yaml, expands it the way SAM does, and reads the local stack's settings.

Needs PyYAML and aws-sam-translator, both in .venv/ (scripts/requirements.txt).
"""

import copy
import functools
import logging
import os
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
LOCAL_ENV = ROOT / "scripts" / "local.env"
CONFIG_RS = ROOT / "functions" / "core" / "src" / "runtime" / "config.rs"
# The image model providers' settings, which config.rs reads through ProviderSettings::parse.
PROVIDERS_RS = ROOT / "functions" / "core" / "src" / "adapters" / "image_model" / "mod.rs"
SQS_RS = ROOT / "functions" / "core" / "src" / "entrypoints" / "sqs.rs"
ITEM_RS = ROOT / "functions" / "core" / "src" / "adapters" / "dynamodb" / "item.rs"


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms (!Ref, !GetAtt, !Sub, ...) as their long forms."""


def _short_form(loader, suffix, node):
    name = "Ref" if suffix == "Ref" else "Condition" if suffix == "Condition" else "Fn::" + suffix
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if name == "Fn::GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _short_form)


@functools.cache
def _template():
    return yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)


def template():
    """template.yaml as written (a fresh copy each call)."""
    return copy.deepcopy(_template())


@functools.cache
def _expanded():
    # The translator is what `sam build`, `sam validate` and CloudFormation's transform run.
    from samtranslator.translator.transform import transform

    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    source = template()
    # The translator wants code in S3; sam build and sam deploy put it there.
    source["Globals"]["Function"]["CodeUri"] = "s3://mediagen-artifacts/code.zip"

    class NoManagedPolicies:
        def load(self):
            return {}

    return transform(source, {}, NoManagedPolicies())


def expanded():
    """The CloudFormation template SAM makes of template.yaml (a fresh copy each call)."""
    return copy.deepcopy(_expanded())


def local_env():
    """scripts/local.env as a dict."""
    settings = {}
    for line in LOCAL_ENV.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            settings[name.strip()] = value.strip()
    return settings


def config_rs():
    return CONFIG_RS.read_text()


def record_concurrency():
    """How many records of a batch generate runs at once: RECORD_CONCURRENCY in entrypoints/sqs.rs."""
    found = re.search(r"pub const RECORD_CONCURRENCY: usize = ([0-9]+);", SQS_RS.read_text())
    if not found:
        raise AssertionError(f"no RECORD_CONCURRENCY in {SQS_RS}")
    return int(found.group(1))


def settings_read_by_config():
    """Every environment variable functions/core/src/runtime/config.rs reads, the providers' with
    them (every name in `impl ProviderSettings` of adapters/image_model/mod.rs)."""
    own = set(re.findall(r'\b(?:get|required|parse_or\(&get,|parse_within\(\s*&get,)\s*\(?\s*"([A-Z][A-Z0-9_]+)"', config_rs()))
    found = re.search(r"impl ProviderSettings \{(.*?)\n\}\n", PROVIDERS_RS.read_text(), re.S)
    if not found:
        raise AssertionError(f"no impl ProviderSettings in {PROVIDERS_RS}")
    return own | set(re.findall(r'"([A-Z][A-Z0-9_]+)"', found.group(1)))


def required_settings():
    return set(re.findall(r'\brequired\("([A-Z][A-Z0-9_]+)"\)', config_rs()))


def config_default(name):
    """The default config.rs gives a numeric setting, as in `parse_or(&get, "NAME", 900)` or
    `parse_within(&get, "NAME", 900, 60..=604_800, "...")`."""
    found = re.search(r'(?:parse_or|parse_within)\(\s*&get,\s*"' + name + r'",\s*([0-9_]+)\s*[,)]', config_rs())
    return int(found.group(1).replace("_", "")) if found else None


def resources_of_type(cfn, kind):
    return {name: r for name, r in cfn["Resources"].items() if r["Type"] == kind}


def ref_name(value):
    """The logical id an intrinsic points at: {"Ref": X}, {"Fn::GetAtt": [X, ...]}, or None."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            return value["Fn::GetAtt"][0]
    return None


def item_rs():
    return ITEM_RS.read_text()


def owner_index_attributes():
    """What by_owner projects: OWNER_INDEX_ATTRIBUTES in adapters/dynamodb/item.rs, in order."""
    found = re.search(r"pub const OWNER_INDEX_ATTRIBUTES: \[&str; [0-9]+\] = \[(.*?)\];", item_rs(), re.S)
    if not found:
        raise AssertionError(f"no OWNER_INDEX_ATTRIBUTES in {ITEM_RS}")
    return re.findall(r'"([a-z_0-9]+)"', found.group(1))
