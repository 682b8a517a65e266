"""Feature extraction and batch prediction over many machines, on Ray Data.

The single-machine paths (:func:`emotrace.features.pipeline.extract_corpus`, ``emotrace
predict``) stay the reference: these pipelines give exactly their results, only spread
over a Ray cluster (a local one by default). Ray is an optional extra
(``pip install 'emotrace[ray]'``) imported only when a pipeline runs.

Layering: this package sits beside :mod:`emotrace.api` (it drives the feature pipeline
and loads models as the api does); nothing below it imports it, the command line
dispatches to it.
"""
