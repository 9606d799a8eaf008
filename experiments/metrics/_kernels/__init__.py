"""Private numerical kernels of :mod:`experiments.metrics` (no public API; import the metric modules instead).

Split by concern:

* :mod:`.blocks` -- block sizes, row blocks, the explicit device argument, numpy -> torch;
* :mod:`.checks` -- argument checks of the batched metrics (resample indices, matrix budget, strategy);
* :mod:`.bounds` -- the rigorous forward error bound of the Gram expansion (Higham, sec. 3.1);
* :mod:`.expansion` -- prepared (centred, power-of-two scaled) clouds, the expansion, direct re-checks, the exact
  distance matrix;
* :mod:`.nearest` -- the Hausdorff kernels (float32 filter, early exit, scipy's early-break path and its guard);
* :mod:`.summed` -- the summed-distance kernel (per-block error budget, direct float64 path and its guard).

Names inside the package carry no leading underscore: the metric modules import them, and nothing imports another
module's underscore names.
"""
