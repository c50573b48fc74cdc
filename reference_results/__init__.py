"""Published numbers as data, one TOML per paper; installed as ``mmclust.reference_results`` so that an
installed mmclust can check itself."""
