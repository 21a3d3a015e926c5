"""Sensors: tasks that wait for something in clm's stores (deferrable, so they wait in the triggerer)."""
