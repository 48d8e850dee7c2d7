"""The Gateway's certificate from cert-manager (components/operators.py installs its
pinned chart): a `Certificate` for the Gateway's host, issued by what the stack file's
`gateway.tls.issuer` describes, into the Secret the HTTPS listener names.

Two issuers:
- `ca`: a private CA of the stack's own (a self-signed root that cert-manager keeps in
  the namespace, and a CA Issuer signing with it). The default for an internal Gateway:
  its host is a private name behind an internal load balancer, which a public ACME CA
  cannot validate over HTTP and for which a DNS-01 validation would need a public zone,
  and would publish the name in Certificate Transparency logs. The clients (inside the
  VPC) trust the root from the `ca.crt` of the CA's Secret. Namespaced Issuers, not
  ClusterIssuers: the root signs this stack's names only, not any namespace's request.
- `acme`: an ACME ClusterIssuer (Let's Encrypt by default) solving DNS-01 in one
  Route53 hosted zone, for a host with a public zone. cert-manager's controller gets its
  AWS credentials through IRSA: `route53_policy` lets it change only the TXT record of
  the host's `_acme-challenge` name in that zone.

A `Certificate` rather than the gateway-shim annotation on the Gateway: the shim needs
cert-manager started with the Gateway API enabled (after those CRDs exist), and it
derives the Certificate from the listener, so the key type, lifetime and issuer would
be nowhere in the program to test or check; the listener names the same Secret either
way.
"""

from __future__ import annotations

import json
from typing import Self

import pulumi
import pulumi_kubernetes as k8s
from pulumi_kubernetes.apiextensions import CustomResource
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs
from pydantic import Field, model_validator

from components.kube import child_options, labels
from components.values import ArgsModel

CERT_MANAGER_API = "cert-manager.io/v1"
# Where components/operators.py installs cert-manager, and its controller's account (the
# chart's default name), which the ACME issuer's IRSA role trusts.
CERT_MANAGER_NAMESPACE = "cert-manager"
CERT_MANAGER_ACCOUNT = "cert-manager"
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
# The Secret the Gateway's listener names when cert-manager issues its certificate.
CERTIFICATE_SECRET = "agent-api-tls"  # noqa: S105 - a name, not a value
CA_SECRET = "agent-platform-ca"  # noqa: S105 - a name, not a value
# The root lives long (clients pin it); leaves are short and renewed by cert-manager.
CA_DURATION = "43800h"
LEAF_DURATION = "2160h"
LEAF_RENEW_BEFORE = "720h"
PRIVATE_KEY = {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"}


class CaIssuer(ArgsModel):
    common_name: str = Field(default="agent-platform internal CA", min_length=1, max_length=64)


class AcmeIssuer(ArgsModel):
    # Where the ACME CA sends expiry notices.
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    server: str = Field(default=LETS_ENCRYPT, pattern=r"^https://")
    # The public Route53 zone holding the host's name: the only zone the role may change.
    hosted_zone_id: str = Field(pattern=r"^Z[A-Z0-9]{1,32}$")


class IssuerConfig(ArgsModel):
    """`gateway.tls.issuer`: exactly one of `ca` and `acme`."""

    ca: CaIssuer | None = None
    acme: AcmeIssuer | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.ca is None) == (self.acme is None):
            raise ValueError("set exactly one of ca (a private CA) and acme (Route53 DNS-01)")
        return self


def route53_policy(hosted_zone_id: str, host: str) -> str:
    """What cert-manager's role may do for DNS-01: create and delete the host's
    `_acme-challenge` TXT record in the one hosted zone, and watch its change settle."""
    zone = f"arn:aws:route53:::hostedzone/{hosted_zone_id}"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "route53:GetChange",
                    "Resource": "arn:aws:route53:::change/*",
                },
                {
                    "Effect": "Allow",
                    "Action": "route53:ListResourceRecordSets",
                    "Resource": zone,
                },
                {
                    "Effect": "Allow",
                    "Action": "route53:ChangeResourceRecordSets",
                    "Resource": zone,
                    "Condition": {
                        "ForAllValues:StringEquals": {
                            "route53:ChangeResourceRecordSetsNormalizedRecordNames": [
                                f"_acme-challenge.{host.lower()}"
                            ],
                            "route53:ChangeResourceRecordSetsRecordTypes": ["TXT"],
                        }
                    },
                },
            ],
        }
    )


class GatewayCertificateArgs(ArgsModel):
    namespace: str
    host: str
    issuer: IssuerConfig
    provider: k8s.Provider
    # The hosted zone's region, for the ACME solver (AWS stacks only).
    region: str | None = None


class GatewayCertificate(pulumi.ComponentResource):
    secret_name: str

    def __init__(
        self, name: str, args: GatewayCertificateArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:traffic:GatewayCertificate", name, None, opts)
        ns = args.namespace
        meta_labels = labels("agent-api", "gateway")

        def resource(
            suffix: str,
            kind: str,
            meta: ObjectMetaArgs,
            spec: dict[str, object],
            after: list[pulumi.Resource] | None = None,
        ) -> CustomResource:
            return CustomResource(
                f"{name}-{suffix}",
                api_version=CERT_MANAGER_API,
                kind=kind,
                metadata=meta,
                spec=spec,
                opts=child_options(self, opts, provider=args.provider, depends_on=after or []),
            )

        issuer_ref: dict[str, str]
        after: list[pulumi.Resource]
        if args.issuer.ca is not None:
            root = resource(
                "root-issuer",
                "Issuer",
                ObjectMetaArgs(name="agent-platform-selfsigned", namespace=ns, labels=meta_labels),
                {"selfSigned": {}},
            )
            ca = resource(
                "ca",
                "Certificate",
                ObjectMetaArgs(name=CA_SECRET, namespace=ns, labels=meta_labels),
                {
                    "isCA": True,
                    "commonName": args.issuer.ca.common_name,
                    "secretName": CA_SECRET,
                    "duration": CA_DURATION,
                    "privateKey": PRIVATE_KEY,
                    "issuerRef": {
                        "group": "cert-manager.io",
                        "kind": "Issuer",
                        "name": "agent-platform-selfsigned",
                    },
                },
                after=[root],
            )
            ca_issuer = resource(
                "ca-issuer",
                "Issuer",
                ObjectMetaArgs(name=CA_SECRET, namespace=ns, labels=meta_labels),
                {"ca": {"secretName": CA_SECRET}},
                after=[ca],
            )
            issuer_ref = {"group": "cert-manager.io", "kind": "Issuer", "name": CA_SECRET}
            after = [ca_issuer]
        else:
            acme = args.issuer.acme
            assert acme is not None  # IssuerConfig holds exactly one
            if args.region is None:
                raise ValueError("an ACME issuer solves DNS-01 in Route53: give the region")
            # Cluster-scoped: named after the namespace, so stacks sharing a cluster differ.
            issuer_name = f"{ns}-acme"
            cluster_issuer = resource(
                "acme-issuer",
                "ClusterIssuer",
                ObjectMetaArgs(name=issuer_name, labels=meta_labels),
                {
                    "acme": {
                        "email": acme.email,
                        "server": acme.server,
                        # The ACME account's key, kept in cert-manager's namespace.
                        "privateKeySecretRef": {"name": f"{issuer_name}-account"},
                        "solvers": [
                            {
                                "selector": {"dnsNames": [args.host]},
                                # Credentials are the controller's (IRSA), not a Secret.
                                "dns01": {
                                    "route53": {
                                        "region": args.region,
                                        "hostedZoneID": acme.hosted_zone_id,
                                    }
                                },
                            }
                        ],
                    }
                },
            )
            issuer_ref = {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": issuer_name}
            after = [cluster_issuer]
        self.secret_name = CERTIFICATE_SECRET
        resource(
            "certificate",
            "Certificate",
            ObjectMetaArgs(name=CERTIFICATE_SECRET, namespace=ns, labels=meta_labels),
            {
                "secretName": CERTIFICATE_SECRET,
                "dnsNames": [args.host],
                "duration": LEAF_DURATION,
                "renewBefore": LEAF_RENEW_BEFORE,
                "privateKey": PRIVATE_KEY,
                "usages": ["server auth", "digital signature"],
                "issuerRef": issuer_ref,
            },
            after=after,
        )
        self.register_outputs({"secretName": self.secret_name})
