"""Key lifecycle jobs run by ``blindstore keys``: rotation + rewrap, crypto-shredding with signed
certificates. They use an administrative Transit identity, never the gateway's."""
