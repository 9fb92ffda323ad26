"""``dpsynth benchmark``: which generator, at which epsilon, gives usable data at an acceptable risk.

* :mod:`~dpsynth.benchmarking.grid` plans the generator x epsilon x repeat
  grid, composes its cost with the ledger's accountant, reserves each run's
  spend before it runs and drives the workers;
* :mod:`~dpsynth.benchmarking.worker` fits, samples and scores one run in a
  process of its own (a crash or a timeout is a row, not the end);
* :mod:`~dpsynth.benchmarking.metrics` scores utility (marginal TVD, SDNist's
  k-marginal, TSTR, propensity, correlation difference);
* :mod:`~dpsynth.benchmarking.consistency` checks the schema's declared rules;
* :mod:`~dpsynth.benchmarking.peers` runs smartnoise-synth from its own venv;
* :mod:`~dpsynth.benchmarking.report` writes report.html beside results.json.
"""
