"""The scenario simulator: the seed's production troubles, played against a running LeafWatch.

scenarios (pure phase descriptions) -> runner (phases, faults, clean-up) driving traffic (HTTP
load with generated leaves and true verdicts) and control (fault switch, model, process), while
observe reads the alerts; timeline turns what was seen into detection delays, report into tables.
"""
