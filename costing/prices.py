"""The price table the cost model and the GPU cap read, shipped as data."""

from __future__ import annotations

import json
from datetime import date
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, field_validator

PRICE_FILE = Path(__file__).parent / "data" / "aws-prices-us-east-1.json"


class UnknownInstanceTypeError(KeyError):
    def __init__(self, instance_type: str) -> None:
        super().__init__(instance_type)
        self.instance_type = instance_type


class PriceTable(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    region: str
    currency: str
    source: str
    read_on: str
    hours_per_month: float
    spot_discount: float
    ec2_hourly: dict[str, float]
    elasticache_hourly: dict[str, float]
    eks_control_plane_hourly: float
    nat_gateway_hourly: float
    nat_gateway_per_gb: float
    nat_gateway_assumed_gb_per_month: float
    load_balancer_hourly: dict[str, float]
    ebs_gp3_per_gib_month: float

    @field_validator("read_on")
    @classmethod
    def _iso_date(cls, value: str) -> str:
        date.fromisoformat(value)  # a ValueError names read_on in the ValidationError
        return value

    def age_days(self, today: date) -> int:
        """Days since the prices were read: the report prints it, as list prices move."""
        return (today - date.fromisoformat(self.read_on)).days

    def age(self, today: date) -> str:
        days = self.age_days(today)
        stale = " (over a year: refresh it, see costing/update_prices.py)" if days > 365 else ""
        return f"price table read on {self.read_on}, {days} days ago{stale}"

    def hourly(self, instance_type: str) -> float:
        """An EC2 type's on-demand price; an unknown type raises, never prices at $0."""
        if instance_type not in self.ec2_hourly:
            raise UnknownInstanceTypeError(instance_type)
        return self.ec2_hourly[instance_type]


@cache
def load_prices(path: Path = PRICE_FILE) -> PriceTable:
    return PriceTable.model_validate(json.loads(path.read_text()))
