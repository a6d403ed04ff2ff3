"""The lot tracker: lots of carriers moving through a flow, every move checked and recorded."""
