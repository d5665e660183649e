"""A view's choice between alternatives (``views.Choice``) in a real headless Chromium:
the unit page's attribution methods, one tab each, switched in the browser."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def attributed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LeNet-5 run on 8 digits with attributions by two methods."""
    from probe.cli import main

    root = tmp_path_factory.mktemp("choice-runs")
    code = main(["run", "--arch", "lenet5", "--dataset", "digits", "--set", "dataset.size=8",
                 "--analysis", "attribution", "--set", "attribution.top_k=2",
                 "--set", "attribution.methods=deconvnet,guided-backprop",
                 "--layers", "c1", "--device", "cpu", "--out", str(root / "lenet"),
                 "--quiet"])
    assert code == 0
    return root


def test_attribution_methods_are_tabs_switched_in_the_browser(dash_duo, attributed):
    from probe.dashboards import create_app

    dash_duo.start_server(create_app(attributed))
    dash_duo.driver.get(dash_duo.server_url + "/unit/lenet/c1/2")
    dash_duo.wait_for_text_to_equal("#unit-title", "lenet · c1 · unit 2", timeout=30)
    section = dash_duo.wait_for_element("#unit-attribution", timeout=30)
    choice = section.find_element("css selector", ".view-choice")
    assert choice.get_attribute("data-choice") == "method"
    tabs = choice.find_elements("css selector", ".choice-tab")
    assert [t.text for t in tabs] == ["Deconvnet", "Guided backprop"]

    def shown() -> list[str]:
        """Captions of the pictures the open tab shows."""
        return [e.text for e in section.find_elements("css selector", ".view-choice p")
                if e.is_displayed()]

    dash_duo.wait_for_contains_text("#unit-attribution", "deconvnet projection", timeout=10)
    assert any("deconvnet projection" in t for t in shown())
    assert not any("guided backpropagation" in t for t in shown())
    tabs[1].click()
    dash_duo.wait_for_contains_text("#unit-attribution", "guided backpropagation", timeout=10)
    assert any("guided backpropagation" in t for t in shown())
    assert not any("deconvnet projection" in t for t in shown())
    pictures = [i for i in section.find_elements("css selector", ".view-choice img")
                if i.is_displayed()]
    assert len(pictures) == 2 and all(
        p.get_attribute("src").startswith("data:image/png;base64,") for p in pictures)
    assert dash_duo.get_logs() == []
