"""One module per provider family; each registers its methods on import."""
