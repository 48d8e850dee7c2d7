"""Refresh the price table from AWS Price List offer files, read from disk.

    python -m costing.update_prices --offer AmazonEC2.json --offer AmazonElastiCache.json \\
        --offer AmazonEKS.json --offer AWSELB.json [--table PATH] [--check]

The offer files are the AWS Price List bulk API's JSON (one per service, the region's
file or the all-regions one), downloaded by whoever runs this: nothing is fetched here.
Each price the table holds is replaced by the file's on-demand price for the table's
region: EC2 instances as Linux, shared tenancy, no pre-installed software; ElastiCache
Redis nodes; the EKS control plane; NAT gateway hours and GB processed; the load
balancers' hourly charge; EBS gp3 per GB-month. The table's `read_on` becomes the oldest
offer file's publication date and `source` names the files' versions. A price the files
do not have is an error naming it: the table is written whole or not at all, so its one
date stays true for every price in it. The assumptions (hours a month, the SPOT discount,
the assumed NAT traffic) and their notes are kept; `note` then names the offer files.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from costing.prices import PRICE_FILE, PriceTable

EC2, ELASTICACHE, EKS, ELB = "AmazonEC2", "AmazonElastiCache", "AmazonEKS", "AWSELB"

Attributes = Mapping[str, str]
_HOURS = {"Hrs", "Hours"}


class OfferError(ValueError):
    """An offer file that cannot refresh the table; the message names the file and price."""


@dataclass(frozen=True)
class Offer:
    path: Path
    code: str
    version: str
    published: date
    # sku -> (productFamily, attributes) and sku -> [(unit, USD)] of its on-demand terms
    products: dict[str, tuple[str, dict[str, str]]]
    on_demand: dict[str, list[tuple[str, float]]]

    @classmethod
    def read(cls, path: Path) -> Offer:
        try:
            doc = json.loads(path.read_text())
            code, version = str(doc["offerCode"]), str(doc["version"])
            published = date.fromisoformat(str(doc["publicationDate"])[:10])
            products = {
                sku: (str(p.get("productFamily", "")), dict(p.get("attributes", {})))
                for sku, p in doc["products"].items()
            }
            on_demand = {
                sku: [
                    (str(dim["unit"]), float(dim["pricePerUnit"]["USD"]))
                    for term in terms.values()
                    for dim in term["priceDimensions"].values()
                ]
                for sku, terms in doc["terms"].get("OnDemand", {}).items()
            }
        except (OSError, json.JSONDecodeError) as error:
            raise OfferError(f"{path}: not a readable offer file: {error}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise OfferError(f"{path}: not in the offer file format (at {error!r})") from None
        return cls(path, code, version, published, products, on_demand)

    def price(
        self, what: str, unit: str, family: str | None, match: Callable[[Attributes], bool]
    ) -> float:
        """The one on-demand price per `unit` of the products of `family` (any family if
        None) that `match`; hourly prices are in "Hrs" or "Hours" depending on the file."""
        units = _HOURS if unit in _HOURS else {unit}
        found = {
            usd
            for sku, (fam, attrs) in self.products.items()
            if (family is None or fam == family) and match(attrs)
            for dim_unit, usd in self.on_demand.get(sku, [])
            # A $0 dimension is a free tier or a placeholder, never the list price.
            if dim_unit in units and usd > 0
        }
        if len(found) != 1:
            problem = "no on-demand price" if not found else f"several prices {sorted(found)}"
            raise OfferError(f"{self.path} ({self.code}): {problem} per {unit} for {what}")
        return found.pop()


def _in(region: str) -> Callable[[Attributes], bool]:
    return lambda a: a.get("regionCode") == region


def _usage(suffix: str) -> Callable[[Attributes], bool]:
    # Usage types may carry a region prefix ("USE2-NatGateway-Hours"); us-east-1's
    # mostly do not ("NatGateway-Hours").
    def test(a: Attributes) -> bool:
        usage = a.get("usagetype", "")
        return usage == suffix or usage.endswith(f"-{suffix}")

    return test


def _all(*tests: Callable[[Attributes], bool]) -> Callable[[Attributes], bool]:
    return lambda a: all(t(a) for t in tests)


def _linux_instance(instance_type: str) -> Callable[[Attributes], bool]:
    wanted = {
        "instanceType": instance_type,
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
        "licenseModel": "No License required",
    }
    return lambda a: all(a.get(k) == v for k, v in wanted.items())


def _redis_node(node_type: str) -> Callable[[Attributes], bool]:
    usage = _usage(f"NodeUsage:{node_type}")
    return lambda a: (
        a.get("instanceType") == node_type and a.get("cacheEngine") == "Redis" and usage(a)
    )


def refreshed(table: Mapping[str, Any], offers: Sequence[Offer]) -> dict[str, Any]:
    """The table with every price from the offers, dated and sourced by them."""
    by_code = {o.code: o for o in offers}
    needed = [EC2, ELASTICACHE, EKS, ELB]
    missing = [c for c in needed if c not in by_code]
    if missing:
        raise OfferError(
            f"no offer file for {missing}: the table prices their services and keeps one "
            f"date for all its prices; give --offer for each of {needed}"
        )
    region = str(table["region"])
    here = _in(region)
    ec2, cache, eks, elb = (by_code[c] for c in needed)

    new = dict(table)
    new["ec2_hourly"] = {
        t: ec2.price(
            f"EC2 {t} (Linux, shared)", "Hrs", "Compute Instance", _all(here, _linux_instance(t))
        )
        for t in table["ec2_hourly"]
    }
    new["elasticache_hourly"] = {
        t: cache.price(
            f"ElastiCache {t} (Redis)", "Hrs", "Cache Instance", _all(here, _redis_node(t))
        )
        for t in table["elasticache_hourly"]
    }
    new["eks_control_plane_hourly"] = eks.price(
        "the EKS control plane", "Hrs", None, _all(here, _usage("AmazonEKS-Hours:perCluster"))
    )
    new["nat_gateway_hourly"] = ec2.price(
        "NAT gateway hours", "Hrs", "NAT Gateway", _all(here, _usage("NatGateway-Hours"))
    )
    new["nat_gateway_per_gb"] = ec2.price(
        "NAT gateway data processed", "GB", "NAT Gateway", _all(here, _usage("NatGateway-Bytes"))
    )
    new["ebs_gp3_per_gib_month"] = ec2.price(
        "EBS gp3 storage", "GB-Mo", "Storage", _all(here, lambda a: a.get("volumeApiName") == "gp3")
    )
    families = {
        "application": "Load Balancer-Application",
        "network": "Load Balancer-Network",
        "classic": "Load Balancer",
    }
    new["load_balancer_hourly"] = {
        kind: elb.price(
            f"the {kind} load balancer hour",
            "Hrs",
            families[kind],
            _all(here, _usage("LoadBalancerUsage")),
        )
        for kind in table["load_balancer_hourly"]
    }
    new["read_on"] = min(o.published for o in offers).isoformat()
    new["source"] = "AWS Price List offer files, on-demand: " + ", ".join(
        f"{o.code} {o.version} (published {o.published.isoformat()})"
        for o in sorted(offers, key=lambda o: o.code)
    )
    new["note"] = (
        "On-demand list prices from the AWS Price List offer files named in source, as "
        "published on read_on; not fetched at run time: refresh with `make prices`. Savings "
        "plans, reserved capacity, data transfer and support are not modelled."
    )
    # The table must still be one the cost model can load.
    PriceTable.model_validate(new)
    return new


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m costing.update_prices", description=__doc__)
    parser.add_argument(
        "--offer", action="append", type=Path, required=True, help="an offer file (JSON)"
    )
    parser.add_argument("--table", type=Path, default=PRICE_FILE, help="the price table to update")
    parser.add_argument(
        "--check", action="store_true", help="print the prices that would change, write nothing"
    )
    args = parser.parse_args(argv)
    try:
        old = json.loads(args.table.read_text())
        new = refreshed(old, [Offer.read(path) for path in args.offer])
    except OfferError as error:
        parser.exit(2, f"{error}\n")
    for line in changes(old, new):
        print(line)
    if not args.check:
        args.table.write_text(json.dumps(new, indent=2) + "\n")
        print(f"wrote {args.table} (read_on {new['read_on']})")
    return 0


def changes(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """`ec2_hourly.g5.xlarge: 1.006 -> 0.9` for each value that differs."""
    lines = []
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            lines += changes(before, value, f"{prefix}{key}.")
        elif value != before:
            lines.append(f"{prefix}{key}: {before} -> {value}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
