"""Published numbers of the CGD and CFT papers, one YAML file per paper (read by reports.paper_numbers).

A package rather than a plain folder so that setuptools ships the YAML files with `reports` in both
editable and regular installs (package-data "*" = ["*.yaml"] applies per package).
"""
