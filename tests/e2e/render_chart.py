"""Renders the chart with the real Helm library (helm-python-sdk), as `helm template`
would: values as JSON on stdin, objects as a JSON list on stdout. Used by the
end-to-end harness so the operator runs under exactly what the chart installs."""

import json
import sys

import helm_python as helm
import yaml


def main():
    chart_dir, release, namespace = sys.argv[1:4]
    values = json.load(sys.stdin)
    chart = helm.Chart.load(chart_dir)
    chart.validate_schema(values)
    manifests = chart.render(values, name=release, namespace=namespace, is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith(".yaml"):
            objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    json.dump(objects, sys.stdout)


if __name__ == "__main__":
    main()
