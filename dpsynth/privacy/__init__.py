"""Privacy accounting: costs as dp-accounting DpEvents, composition, calibration, the ledger."""

from dpsynth.privacy.accountant import (
    calibrate,
    compose,
    epsilon_for,
    gaussian_sigma,
    zcdp_epsilon,
)
from dpsynth.privacy.cost import PrivacyCost, event_from_dict, event_to_dict

__all__ = [
    "PrivacyCost",
    "calibrate",
    "compose",
    "epsilon_for",
    "event_from_dict",
    "event_to_dict",
    "gaussian_sigma",
    "zcdp_epsilon",
]
