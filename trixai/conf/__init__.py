"""trixai configs, shipped as package data and composed through pkg://trixai.conf."""
