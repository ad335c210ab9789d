"""The leakage-free split: MobileNet embeddings (``embed``), the near-duplicate graph (``graph``),
the split and its cache (``compute``), its leakage report (``report``), audits (``audit``).

``INPUT_SIZE`` lives here, importing nothing: the split's cache key needs it without torch."""

INPUT_SIZE = (224, 224)  # the embedder's input (h, w): part of every split's cache key
