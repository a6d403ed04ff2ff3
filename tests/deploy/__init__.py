"""Tests of the deployment files: the systemd unit and the install script."""
