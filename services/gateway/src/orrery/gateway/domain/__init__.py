"""The gateway's pure domain: users and what belongs to them."""
