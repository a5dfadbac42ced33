"""What the custom resources of a namespace may name: the platform's policy.

Anyone who may create ClassificationBatches and ModelDeployments in a namespace uses the platform's
storage credentials through them, so every URI, Secret and ServiceAccount a resource names is checked
against its namespace's entry before any Job or InferenceService exists (the operator), and every
image a batch's rows name is checked again where it is read (the worker). A namespace the policy
does not list gets `default`, which names nothing unless the platform team says otherwise.

The gateway's own prefixes (its images and batches) are reserved: only a resource labelled with a
gateway owner may name them, and only that owner's part (`<prefix>/<owner>/`). Labels can be copied,
so the admission policy, which sees who sends the request, is the real check there; this one is
defence in depth.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from kubeclassify.core import constants as c
from kubeclassify.core.resources.classification_batch import ClassificationBatchSpec
from kubeclassify.core.resources.model_deployment import ModelDeploymentSpec

ENV_POLICY = "KUBECLASSIFY_POLICY"  # a batch worker's copy: its namespace's entry, as `default`
ANY = "*"  # in `secrets` or `serviceAccounts`: any name
# The same patterns in the admission policy's CEL (RE2) and here: keep them to what both read alike.
DOT_SEGMENT = r"(^|/)[.][.]?(/|$)"
ENCODED_DOT = r"(?i)%2e"


class NamespacePolicy(BaseModel):
    """What one namespace's resources may name."""

    model_config = {"populate_by_name": True, "extra": "forbid"}

    read: list[str] = Field(
        default_factory=list,
        description="URI prefixes (s3://bucket/prefix/, pvc://claim/) inputs, models and labels may read.",
    )
    write: list[str] = Field(
        default_factory=list, description="URI prefixes outputs and image copies may write."
    )
    secrets: list[str] = Field(
        default_factory=list,
        description="Secrets a ModelDeployment's storage may name (`*`: any in the namespace).",
    )
    service_accounts: list[str] = Field(
        default_factory=list,
        alias="serviceAccounts",
        description="ServiceAccounts a ModelDeployment's storage may name (`*`: any in the namespace).",
    )


class Policy(BaseModel):
    """The platform's policy for every namespace the operator watches."""

    model_config = {"populate_by_name": True, "extra": "forbid"}

    namespaces: dict[str, NamespacePolicy] = Field(
        default_factory=dict, description="Each namespace's entry, by name."
    )
    default: NamespacePolicy = Field(
        default_factory=NamespacePolicy, description="The entry of a namespace not listed: nothing."
    )
    reserved: list[str] = Field(
        default_factory=list,
        description="The gateway's prefixes (images, batches): only its owners' resources name them,"
        " each only `<prefix>/<owner>/`.",
    )
    shared: list[str] = Field(
        default_factory=list,
        description="URIs under a reserved prefix that a gateway owner's resources may read whole"
        " (the daily manifest and its root).",
    )
    allow_file: bool = Field(
        False,
        alias="allowFile",
        description="Whether file:// URIs may be named: only for an operator run outside a cluster.",
    )

    def of(self, namespace: str) -> NamespacePolicy:
        return self.namespaces.get(namespace, self.default)


@dataclass(frozen=True)
class Denial:
    """One thing a resource names that the policy does not allow."""

    field: str
    value: str
    rule: str

    def __str__(self) -> str:
        return f"{self.field}: {self.value!r} {self.rule}"


def _prefix(p: str) -> str:
    return p if p.endswith("/") else p + "/"


def _under(uri: str, prefix: str) -> bool:
    p = _prefix(prefix)
    return uri.startswith(p) or _prefix(uri) == p


def uri_problem(uri: str, allowed: Iterable[str], policy: Policy, owner: str | None = None) -> str | None:
    """Why `uri` (a URI or a template whose placeholders come after its fixed part) may not be named
    by a resource of `owner` (None: not a gateway owner's) under the `allowed` prefixes, or None."""
    allowed = list(allowed)
    if uri.startswith("file://") and not policy.allow_file:
        return "is a file:// URI: only an operator run outside a cluster reads files"
    if re.search(DOT_SEGMENT, uri) or re.search(ENCODED_DOT, uri) or "\\" in uri:
        return "has a '.' or '..' segment (plain or percent-encoded) or a backslash"
    reserved = [r for r in policy.reserved if _under(uri, r)]
    if reserved:
        if owner is None:
            return f"is under the gateway's {_prefix(reserved[0])}: only the gateway's own resources name it"
        mine = [_prefix(r) + owner + "/" for r in reserved]
        if not any(_under(uri, m) for m in mine) and uri not in policy.shared:
            return f"is under the gateway's {_prefix(reserved[0])} but not {owner}'s part of it"
    if not any(_under(uri, p) for p in allowed):
        shown = ", ".join(allowed) or "none"
        return f"is outside what this namespace may use (policy: {shown})"
    return None


def _name_problem(name: str, allowed: list[str], what: str) -> str | None:
    if ANY in allowed or name in allowed:
        return None
    return f"is not a {what} this namespace's resources may name (policy: {', '.join(allowed) or 'none'})"


def owner_of(labels: dict[str, Any] | None) -> str | None:
    """The gateway owner a resource is labelled with, if any."""
    owner = (labels or {}).get(c.LABEL_OWNER)
    return str(owner) if owner else None


def model_denials(
    policy: Policy, namespace: str, spec: ModelDeploymentSpec, prefix: str = "spec"
) -> list[Denial]:
    """What a ModelDeployment names that its namespace may not."""
    rules = policy.of(namespace)
    found: list[Denial] = []
    model = spec.model
    for field, uri in ((f"{prefix}.model.uri", model.uri), (f"{prefix}.model.labelsUri", model.labels_uri)):
        if uri and (why := uri_problem(uri, rules.read, policy)):
            found.append(Denial(field, uri, why))
    storage = spec.storage
    names = (
        ("secretName", storage.secret_name if storage else None, rules.secrets, "Secret"),
        (
            "serviceAccountName",
            storage.service_account_name if storage else None,
            rules.service_accounts,
            "ServiceAccount",
        ),
    )
    for field, name, allowed, what in names:
        if name and (why := _name_problem(name, allowed, what)):
            found.append(Denial(f"{prefix}.storage.{field}", name, why))
    return found


def batch_denials(
    policy: Policy,
    namespace: str,
    spec: ClassificationBatchSpec,
    labels: dict[str, Any] | None = None,
    model: ModelDeploymentSpec | None = None,
) -> list[Denial]:
    """What a ClassificationBatch names that its namespace may not, with the storage of the
    ModelDeployment its Jobs run with (its Secret and ServiceAccount become the Jobs')."""
    rules, owner = policy.of(namespace), owner_of(labels)
    named: list[tuple[str, str, list[str]]] = []
    i = spec.input
    if i.manifest is not None:
        named.append(("spec.input.manifest.uri", i.manifest.uri, rules.read))
        if i.manifest.root:
            named.append(("spec.input.manifest.root", i.manifest.root, rules.read))
    if i.prefix is not None:
        named.append(("spec.input.prefix.uri", i.prefix.uri, rules.read))
    if i.urls is not None:
        named.append(("spec.input.urls.uri", i.urls.uri, rules.read))
    named.append(("spec.output.uri", spec.output.uri, rules.write))
    if spec.output.copy_images is not None:
        named.append(("spec.output.copyImages.uri", spec.output.copy_images.uri, rules.write))
    found = [Denial(f, u, why) for f, u, allowed in named if (why := uri_problem(u, allowed, policy, owner))]
    if model is not None:
        found += model_denials(policy, namespace, model, f"spec.modelRef {spec.model_ref.name!r}: spec")
    return found


def for_worker(policy: Policy, namespace: str) -> Policy:
    """The policy a batch's worker checks again: its namespace's entry, as `default`."""
    return policy.model_copy(update={"namespaces": {}, "default": policy.of(namespace)})


def webhook_secret_denial(name: str, labels: dict[str, str] | None) -> Denial | None:
    """A webhook may sign only with a Secret labelled for it: any other Secret of the namespace (a
    storage key, another receiver's key) must not become a signing oracle. None: allowed, or the
    Secret does not exist (yet)."""
    if labels is None or labels.get(c.LABEL_WEBHOOK_SECRET) == "true":
        return None
    rule = f"is not labelled {c.LABEL_WEBHOOK_SECRET}=true: a webhook signs only with a Secret made for it"
    return Denial("spec.webhook.secretName", name, rule)


def describe(denials: list[Denial]) -> str:
    """One message for a PolicyDenied condition and its Event."""
    return "; ".join(map(str, denials))
