from services.devstack import DevstackSettings, banner


def test_banner_names_metrics_port_range_when_base_port_is_set():
    assert "metrics :9091-9094," in banner(DevstackSettings(metrics_base_port=9091), "http://t/metrics")


def test_banner_says_free_ports_when_metrics_base_port_is_zero():
    text = banner(DevstackSettings(metrics_base_port=0), "http://t/metrics")
    assert ":0-3" not in text
    assert "metrics on free ports" in text


def test_banner_says_which_engine_answers_clicks():
    assert "(clicks: GrabCut)" in banner(DevstackSettings(), "http://t/metrics")
    assert "(clicks: SAM pair tiny)" in banner(DevstackSettings(click_model="tiny"), "http://t/metrics")
