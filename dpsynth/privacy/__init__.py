"""Privacy accounting: costs as dp-accounting DpEvents, composition, calibration, the ledger."""

from dpsynth.privacy.accountant import (
    accountant_for,
    calibrate,
    compose,
    epsilon_for,
    gaussian_sigma,
    largest_integer,
    zcdp_epsilon,
)
from dpsynth.privacy.cost import PrivacyCost, event_from_dict, event_to_dict

__all__ = [
    "PrivacyCost",
    "accountant_for",
    "calibrate",
    "compose",
    "epsilon_for",
    "event_from_dict",
    "event_to_dict",
    "gaussian_sigma",
    "largest_integer",
    "zcdp_epsilon",
]
