"""Refreshing the price table from AWS Price List offer files: synthetic offer files in
the bulk API's JSON format (products by SKU with attributes; terms.OnDemand by SKU, then
offer term, then price dimensions), with look-alike products that must not be picked."""

from __future__ import annotations

import json
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from costing.prices import PRICE_FILE, PriceTable
from costing.update_prices import Offer, OfferError, main, refreshed

TABLE = json.loads(PRICE_FILE.read_text())
REGION = "us-east-1"
_skus = count(1)


class OfferFile:
    """One service's offer file, built product by product."""

    def __init__(self, code: str, published: str = "2026-11-20T18:00:00Z") -> None:
        self.doc: dict[str, Any] = {
            "formatVersion": "v1.0",
            "disclaimer": "synthetic, for tests",
            "offerCode": code,
            "version": published.replace("-", "").replace(":", "")[:15],
            "publicationDate": published,
            "products": {},
            "terms": {"OnDemand": {}, "Reserved": {}},
        }

    def add(self, family: str, attrs: dict[str, str], unit: str, usd: float) -> None:
        sku = f"SKU{next(_skus):08d}"
        self.doc["products"][sku] = {
            "sku": sku,
            "productFamily": family,
            "attributes": {"regionCode": REGION, "location": "US East (N. Virginia)", **attrs},
        }
        term = f"{sku}.JRTCKXETXF"
        self.doc["terms"]["OnDemand"][sku] = {
            term: {
                "offerTermCode": "JRTCKXETXF",
                "sku": sku,
                "effectiveDate": "2026-11-01T00:00:00Z",
                "priceDimensions": {
                    f"{term}.6YS6EN2CT7": {
                        "rateCode": f"{term}.6YS6EN2CT7",
                        "description": "synthetic",
                        "beginRange": "0",
                        "endRange": "Inf",
                        "unit": unit,
                        "pricePerUnit": {"USD": f"{usd:.10f}"},
                        "appliesTo": [],
                    }
                },
                "termAttributes": {},
            }
        }
        # A reserved term at a lower price, which must never be read as the list price.
        self.doc["terms"]["Reserved"][sku] = {
            f"{sku}.4NA7Y494T4": {
                "priceDimensions": {"x": {"unit": unit, "pricePerUnit": {"USD": f"{usd / 2:.10f}"}}}
            }
        }

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(self.doc))
        return path


def _linux(instance_type: str, **extra: str) -> dict[str, str]:
    return {
        "instanceType": instance_type,
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
        "licenseModel": "No License required",
        "usagetype": f"BoxUsage:{instance_type}",
        **extra,
    }


def offers(tmp_path: Path, scale: float = 0.9) -> list[Path]:
    """Every price of the table at `scale` times its value, among look-alikes."""
    ec2 = OfferFile("AmazonEC2")
    for t, usd in TABLE["ec2_hourly"].items():
        ec2.add("Compute Instance", _linux(t), "Hrs", usd * scale)
        ec2.add("Compute Instance", _linux(t, operatingSystem="Windows"), "Hrs", usd * 3)
        ec2.add("Compute Instance", _linux(t, tenancy="Dedicated"), "Hrs", usd * 4)
        ec2.add("Compute Instance", _linux(t, preInstalledSw="SQL Std"), "Hrs", usd * 5)
        ec2.add("Compute Instance", _linux(t, capacitystatus="UnusedCapacityReservation"), "Hrs", 9)
        ec2.add("Compute Instance", {**_linux(t), "regionCode": "eu-west-1"}, "Hrs", usd * 6)
    ec2.add("NAT Gateway", {"usagetype": "NatGateway-Hours"}, "Hrs", 0.05)
    ec2.add("NAT Gateway", {"usagetype": "NatGateway-Bytes"}, "GB", 0.048)
    ec2.add(
        "NAT Gateway", {"usagetype": "USW2-NatGateway-Hours", "regionCode": "us-west-2"}, "Hrs", 1
    )
    ec2.add("Storage", {"volumeApiName": "gp3", "usagetype": "EBS:VolumeUsage.gp3"}, "GB-Mo", 0.075)
    ec2.add("Storage", {"volumeApiName": "gp2", "usagetype": "EBS:VolumeUsage.gp2"}, "GB-Mo", 0.1)
    ec2.add("System Operation", {"volumeApiName": "gp3"}, "IOPS-Mo", 0.005)

    cache = OfferFile("AmazonElastiCache", "2026-11-18T09:00:00Z")
    for t, usd in TABLE["elasticache_hourly"].items():
        attrs = {"instanceType": t, "cacheEngine": "Redis", "usagetype": f"NodeUsage:{t}"}
        cache.add("Cache Instance", attrs, "Hrs", usd * scale)
        cache.add("Cache Instance", {**attrs, "cacheEngine": "Memcached"}, "Hrs", usd * 2)
        extended = {**attrs, "usagetype": f"ExtendedSupport:NodeUsage:{t}x"}
        cache.add("Cache Instance", extended, "Hrs", usd * 3)

    eks = OfferFile("AmazonEKS")
    eks.add("Compute", {"usagetype": "USE1-AmazonEKS-Hours:perCluster"}, "Hours", 0.11)
    eks.add("Compute", {"usagetype": "USE1-AmazonEKS-Hours:extendedSupport"}, "Hours", 0.6)

    elb = OfferFile("AWSELB")
    for family, usd in [
        ("Load Balancer-Application", 0.0252),
        ("Load Balancer-Network", 0.0251),
        ("Load Balancer", 0.028),
    ]:
        elb.add(family, {"usagetype": "LoadBalancerUsage"}, "Hrs", usd)
        elb.add(family, {"usagetype": "LCUUsage"}, "LCU-Hrs", 0.008)
    return [f.write(tmp_path / f"{f.doc['offerCode']}.json") for f in (ec2, cache, eks, elb)]


def _table(tmp_path: Path) -> Path:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(TABLE, indent=2) + "\n")
    return path


def _args(files: list[Path], table: Path) -> list[str]:
    return [arg for f in files for arg in ("--offer", str(f))] + ["--table", str(table)]


def test_refresh_takes_each_on_demand_linux_price_and_the_files_date(tmp_path: Path) -> None:
    table = _table(tmp_path)
    assert main(_args(offers(tmp_path), table)) == 0

    new = json.loads(table.read_text())
    prices = PriceTable.model_validate(new)
    for t, usd in TABLE["ec2_hourly"].items():
        assert prices.ec2_hourly[t] == pytest.approx(usd * 0.9), t
    for t, usd in TABLE["elasticache_hourly"].items():
        assert prices.elasticache_hourly[t] == pytest.approx(usd * 0.9), t
    assert prices.eks_control_plane_hourly == 0.11
    assert (prices.nat_gateway_hourly, prices.nat_gateway_per_gb) == (0.05, 0.048)
    assert prices.ebs_gp3_per_gib_month == 0.075
    assert prices.load_balancer_hourly == {
        "application": 0.0252,
        "network": 0.0251,
        "classic": 0.028,
    }
    # The oldest file's date; each file's version named in the source.
    assert new["read_on"] == "2026-11-18"
    assert "AmazonEC2 20261120T180000 (published 2026-11-20)" in new["source"]
    assert "AmazonElastiCache" in new["source"]
    # The model's assumptions are the table's own, kept.
    for key in ("hours_per_month", "spot_discount", "nat_gateway_assumed_gb_per_month"):
        assert new[key] == TABLE[key]
    assert new["spot_discount_note"] == TABLE["spot_discount_note"]
    # No longer "from memory of the public price pages".
    assert new["note"].startswith("On-demand list prices from the AWS Price List offer files")


def test_check_prints_the_changes_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = _table(tmp_path)
    assert main([*_args(offers(tmp_path), table), "--check"]) == 0
    out = capsys.readouterr().out
    assert f"ec2_hourly.g5.xlarge: 1.006 -> {1.006 * 0.9}" in out
    assert "read_on: 2024-06-01 -> 2026-11-18" in out
    assert json.loads(table.read_text()) == TABLE


def test_a_price_missing_from_the_files_fails_naming_it_and_keeps_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = offers(tmp_path)
    ec2 = json.loads(files[0].read_text())
    for sku, product in list(ec2["products"].items()):
        if product["attributes"].get("instanceType") == "p5.48xlarge":
            del ec2["products"][sku]
    files[0].write_text(json.dumps(ec2))
    table = _table(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(_args(files, table))
    assert exit_.value.code == 2
    assert "no on-demand price per Hrs for EC2 p5.48xlarge (Linux, shared)" in (
        capsys.readouterr().err
    )
    assert json.loads(table.read_text()) == TABLE


def test_every_service_the_table_prices_needs_its_offer_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = offers(tmp_path)
    with pytest.raises(SystemExit):
        main(_args(files[:2], _table(tmp_path)))
    assert "no offer file for ['AmazonEKS', 'AWSELB']" in capsys.readouterr().err


def test_a_file_not_in_the_offer_format_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "index.json"
    bad.write_text(json.dumps({"formatVersion": "v1.0", "offers": {}}))
    with pytest.raises(SystemExit):
        main(["--offer", str(bad), "--table", str(_table(tmp_path))])
    assert f"{bad}: not in the offer file format (at KeyError('offerCode'))" in (
        capsys.readouterr().err
    )


def test_two_prices_for_one_entry_is_an_error_not_a_guess(tmp_path: Path) -> None:
    files = offers(tmp_path)
    eks = OfferFile("AmazonEKS")
    eks.add("Compute", {"usagetype": "USE1-AmazonEKS-Hours:perCluster"}, "Hours", 0.11)
    eks.add("Compute", {"usagetype": "AmazonEKS-Hours:perCluster"}, "Hrs", 0.2)
    files[2] = eks.write(tmp_path / "eks2.json")
    with pytest.raises(OfferError, match=r"several prices \[0\.11, 0\.2\]"):
        refreshed(TABLE, [Offer.read(f) for f in files])
