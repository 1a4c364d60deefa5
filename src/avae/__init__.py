"""avae: the Aggregate Variational Autoencoder and the models it is compared with."""

__version__ = "0.1.0"
