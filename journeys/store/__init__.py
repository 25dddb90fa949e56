"""All SQL of the product, one module per table family."""
