"""Evidence a release can be checked against later: identities, a signed bundle, verification.

* :mod:`~dpsynth.evidence.keys`: Ed25519 key pairs of operators and approvers.
* :mod:`~dpsynth.evidence.bundle`: the canonical index of a release directory
  (``bundle.json``) and the signatures over it (``bundle.sig.json``).
* :mod:`~dpsynth.evidence.approval`: a reviewer's decision, in the ledger and
  signed over the same index.
* :mod:`~dpsynth.evidence.verify`: every check of ``dpsynth verify``.
"""
