"""The study: ``dermsynth run``'s stages from data to report (pipeline), its config, its folder's layout, and
the HTML report."""
