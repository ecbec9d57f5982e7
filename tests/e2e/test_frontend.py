"""Classifying in the clinician web app: real headless Chromium, serve.py in front of the real gateway."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pydicom
from e2e_steps import (
    CLASS_NAMES,
    DEFAULT_CARD,
    FINDINGS,
    SLOW,
    case_of,
    choose_files,
    classify,
    expect,
    go_to,
    history_row,
    percent,
    sign_in,
    sign_in_as_admin,
    wait_until_loaded,
)


def results_total(admin_client) -> int:
    return admin_client.get("/results", params={"limit": 1}).json()["total"]


def test_classify_a_jpeg_and_a_dicom_then_find_them_in_the_history(page, gateway, sample_xrays, data_dir, screenshots):
    from PIL import Image

    xray, dicom_file = sample_xrays["pneumonia"][0], data_dir / "dicom" / "RG1_UNCR.dcm"
    dicom_header = pydicom.dcmread(dicom_file, stop_before_pixels=True)
    sign_in_as_admin(page, gateway)
    screenshots(page, "classify-empty")

    with page.expect_response(lambda response: response.url.endswith("/api/preview")) as dicom_preview:
        choose_files(page, xray, dicom_file)
    assert dicom_preview.value.status == 200
    for path in (xray, dicom_file):
        expect(case_of(page, path.name).get_by_text("Ready to classify")).to_be_visible()
    # The JPEG is shown as it is; the DICOM as the gateway rendered it.
    assert wait_until_loaded(page, page.get_by_role("img", name=f"Preview of {xray.name}")) == Image.open(xray).width
    dicom_preview_image = page.get_by_role("img", name=f"Preview of {dicom_file.name}")
    assert wait_until_loaded(page, dicom_preview_image) == dicom_header.Columns
    expect(page.get_by_text("2 images ready")).to_be_visible()

    answers = classify(page, expected_answers=2)

    assert [answer["status"] for answer in answers] == [201, 201], answers
    results = {path.name: answer["body"] for path, answer in zip((xray, dicom_file), answers)}
    expect(page.get_by_role("status").filter(has_text="2 of 2 classified.")).to_be_visible()
    for name, result in results.items():
        panel = case_of(page, name).locator("[data-role=result]")
        expect(panel.locator(".finding")).to_have_text(FINDINGS[result["label"]])
        bars = panel.get_by_role("list", name="Probability of each class").get_by_role("listitem")
        expect(bars).to_have_count(2)
        for label, probability in result["probabilities"].items():
            bar = bars.filter(has_text=CLASS_NAMES[label])
            expect(bar).to_contain_text(percent(probability))
            assert bar.locator(".bar-fill").get_attribute("style").startswith("width:")
        expect(panel).to_contain_text(f"{result['model_name']} v{result['model_version']}")
        threshold = result["threshold"]
        expect(panel).to_contain_text(
            f"{percent(threshold)} probability of {CLASS_NAMES[result['positive_class']].lower()}"
            if threshold is not None
            else "None"
        )
        expect(panel).to_contain_text("not a diagnosis")
        # The model's explanation heatmap, fetched from the gateway's route, is laid over the image.
        assert result["explanation"]["heatmap_url"] == f"/results/{result['id']}/heatmap"
        overlay = case_of(page, name).locator(".viewer-heatmap")
        assert wait_until_loaded(page, overlay) > 0
        assert overlay.evaluate("(img) => Math.max(img.naturalWidth, img.naturalHeight)") == 512
        expect(case_of(page, name).get_by_label("Heatmap opacity")).to_be_visible()
    dicom_result = results[dicom_file.name]
    assert dicom_result["image"]["modality"] == "CR"
    screenshots(page, "classify-result")

    go_to(page, "History")
    for name, result in results.items():
        row = history_row(page, result["id"])
        expect(row).to_be_visible()
        expect(row).to_contain_text(FINDINGS[result["label"]])
        expect(row).to_contain_text(percent(result["probabilities"]["pneumonia"]))
        expect(row).to_contain_text(f"{result['model_name']} v{result['model_version']}")
        expect(row).to_contain_text(gateway.admin_username)
        assert wait_until_loaded(page, row.locator("img")) > 0  # the DICOM thumbnail is the gateway's rendering
    screenshots(page, "history")

    history_row(page, dicom_result["id"]).get_by_role("button").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".finding")).to_have_text(FINDINGS[dicom_result["label"]])
    expect(dialog).to_contain_text("DICOM · CR · CHEST · PA view")
    image = dialog.get_by_role("img", name=f"Chest X-ray submitted by {gateway.admin_username}")
    assert wait_until_loaded(page, image) == dicom_header.Columns  # the full-size rendering
    assert wait_until_loaded(page, dialog.locator(".viewer-heatmap")) < 512  # a tall image: 512 is its height
    screenshots(page, "detail")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    with page.expect_request(lambda request: request.url.endswith("/api/auth/logout")) as logout:
        page.get_by_role("button", name="Sign out").click()
    assert "refresh_token=" in logout.value.post_data  # the session is revoked at the gateway too
    expect(page.get_by_role("status").filter(has_text="You have signed out.")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()


def test_a_file_of_the_wrong_type_gets_its_message_and_is_not_sent(page, gateway, tmp_path, sample_xrays):
    notes = tmp_path / "report.txt"
    notes.write_text("not an X-ray")
    sent = []
    page.on("request", lambda request: sent.append(request.url) if "/api/classify" in request.url else None)
    sign_in_as_admin(page, gateway)

    choose_files(page, notes)

    expect(case_of(page, notes.name).get_by_role("alert")).to_have_text(
        "This file type is not supported. Choose a chest X-ray saved as a JPEG, PNG or DICOM (.dcm) file."
    )
    expect(page.get_by_role("button", name="Classify", exact=True)).to_be_disabled()
    page.get_by_role("button", name=f"Remove {notes.name}").click()
    expect(case_of(page, notes.name)).to_have_count(0)
    assert sent == []


def test_a_file_that_only_looks_like_an_image_is_refused_and_not_stored(page, gateway, admin_client, tmp_path):
    fake = tmp_path / "not-an-xray.png"
    fake.write_text("this is text, not a PNG image")
    before = results_total(admin_client)
    sign_in_as_admin(page, gateway)

    choose_files(page, fake)
    expect(case_of(page, fake.name).get_by_text("The image cannot be shown")).to_be_visible()
    [answer] = classify(page)

    assert answer["status"] == 415
    expect(case_of(page, fake.name).get_by_role("alert")).to_contain_text("This file type is not supported")
    expect(page.get_by_role("button", name="Classify", exact=True)).to_be_disabled()
    expect(page.locator("#classify .result")).to_have_count(0)
    assert results_total(admin_client) == before


def test_a_too_large_file_is_refused_with_a_clear_message(page, gateway, tmp_path):
    huge = tmp_path / "huge.jpg"
    huge.write_bytes(b"\xff\xd8\xff" + bytes(int(gateway.env.get("MAX_UPLOAD_BYTES", 20 * 1024 * 1024))))
    sign_in_as_admin(page, gateway)

    choose_files(page, huge)
    [answer] = classify(page)

    assert answer["status"] == 413
    expect(case_of(page, huge.name).get_by_role("alert")).to_contain_text("This file is too large")


def test_an_unusual_image_gets_a_warning_and_its_heatmap_is_laid_over_it(
    page, gateway, data_dir, screenshots, tmp_path
):
    """An adult's chest X-ray from another hospital in a DICOM that says the patient is 4: the intended-use
    gate sends it to the pediatric model (a chest X-ray of a child), which flags it as unlike its training images."""
    import numpy as np
    from PIL import Image

    unusual = tmp_path / "adult_xray_labelled_age_4.dcm"
    dataset = pydicom.dcmread(data_dir / "dicom" / "RG1_UNCR.dcm")
    pixels = np.asarray(Image.open(data_dir / "adult-cxr" / "nih" / "normal" / "00001308_002.png").convert("L"))
    dataset.PatientAge, dataset.PhotometricInterpretation = "004Y", "MONOCHROME2"
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 8, 8, 7, 0
    dataset.PixelData = pixels.tobytes()
    for keyword in ("WindowCenter", "WindowWidth", "RescaleSlope", "RescaleIntercept"):
        dataset.pop(keyword, None)
    dataset.save_as(unusual, enforce_file_format=True)
    sign_in_as_admin(page, gateway)
    choose_files(page, unusual)

    [answer] = classify(page)

    assert answer["status"] == 201 and answer["body"]["ood"]["flagged"] is True, answer
    assert answer["body"]["model_name"] == "pneumonia-xray"
    card = case_of(page, unusual.name)
    expect(card.get_by_text("Unusual image: it looks unlike the images the model was trained on")).to_be_visible()
    expect(card.locator(".facts")).to_contain_text(f"Unusual image (score {answer['body']['ood']['score']:.1f})")
    overlay = card.locator(".viewer-heatmap")
    expect(overlay).to_be_visible()
    assert wait_until_loaded(page, overlay) == 512  # the PNG from /results/{id}/heatmap, fetched with the token
    # Laid exactly over the image: the same box, and the same aspect ratio fitted into it.
    image = card.locator(".viewer-image")
    assert wait_until_loaded(page, image) == 256
    assert image.bounding_box() == overlay.bounding_box()
    aspect = "(img) => img.naturalWidth / img.naturalHeight"
    assert abs(image.evaluate(aspect) - overlay.evaluate(aspect)) < 0.01
    screenshots(page, "classify-unusual-image")
    opacity = card.get_by_label("Heatmap opacity")
    opacity.fill("80")
    expect(overlay).to_have_css("opacity", "0.8")
    card.get_by_label("Show explanation heatmap").uncheck()
    expect(overlay).to_be_hidden()
    expect(opacity).to_be_disabled()


def test_an_uncertain_result_is_marked(page, gateway, sample_xrays):
    """A probability close to the threshold cannot be asked of the real model: the browser gets such a result."""
    result = {
        "id": "00000000-0000-4000-8000-000000000001",
        "created_at": "2026-01-02T10:00:00Z",
        "created_by": gateway.admin_username,
        "classes": [
            {"label": label, "name": CLASS_NAMES[label], "finding": FINDINGS[label]} for label in DEFAULT_CARD.labels
        ],
        "label": DEFAULT_CARD.labels[1],
        "probabilities": {DEFAULT_CARD.labels[0]: 0.45, DEFAULT_CARD.labels[1]: 0.55},
        "positive_class": DEFAULT_CARD.labels[1],
        "threshold": 0.5,
        "model_name": "pneumonia-xray",
        "model_version": "1",
        "image": {"id": "00000000-0000-4000-8000-000000000002", "content_type": "image/jpeg", "size_bytes": 1,
                  "sha256": "0" * 64, "url": "/results/x/image"},  # fmt: skip
    }
    page.route("**/api/classify", lambda route: route.fulfill(status=201, body=json.dumps(result),
                                                              content_type="application/json"))  # fmt: skip
    sign_in_as_admin(page, gateway)
    xray = sample_xrays["normal"][0]

    choose_files(page, xray)
    classify(page)

    card = case_of(page, xray.name)
    expect(card.get_by_text("Uncertain: the probability is close to the decision threshold")).to_be_visible()
    expect(card.locator(".warning")).to_have_count(1)  # this result has no `ood`: no unusual-image warning
    expect(card.get_by_label("Heatmap opacity")).to_have_count(0)  # nor an explanation


def test_an_inference_outage_shows_when_to_retry(page, gateway, sample_xrays):
    # Stopping the shared inference service would disturb other tests; the browser gets its answer instead.
    problem = '{"status":503,"title":"Service Unavailable","detail":"down","code":"inference_unavailable"}'
    page.route(
        "**/api/classify",
        lambda route: route.fulfill(
            status=503, body=problem, content_type="application/problem+json", headers={"Retry-After": "7"}
        ),
    )
    sign_in_as_admin(page, gateway)
    xray = sample_xrays["normal"][0]

    choose_files(page, xray)
    classify(page)

    expect(case_of(page, xray.name).get_by_role("alert")).to_have_text(
        "The classification service is not available at the moment. Please try again in 7 seconds."
    )
    expect(page.get_by_text("0 of 1 classified; 1 could not be classified.")).to_be_visible()
    expect(page.get_by_role("button", name="Classify", exact=True)).to_be_enabled()  # it can be sent again


def test_a_gateway_outage_is_explained_at_sign_in(open_page, gateway, logs_dir):
    from processes import free_port, frontend_process

    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    frontend = frontend_process(free_port(), nowhere, logs_dir / "frontend-no-gateway.log").start()
    try:
        page = open_page(frontend.health_url.removesuffix("/healthz"))
        sign_in(page, gateway.admin_username, gateway.admin_password)
        expect(page.get_by_role("alert")).to_have_text(
            "The server is not available at the moment. Please try again in 5 seconds."
        )
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    finally:
        frontend.stop()


def test_the_page_makes_no_request_to_another_host(page, gateway, sample_xrays, frontend_url):
    origin = urlsplit(frontend_url)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    document = page.goto("/")
    assert "default-src 'self'" in document.headers["content-security-policy"]
    sign_in_as_admin(page, gateway)
    choose_files(page, sample_xrays["normal"][0])
    result = classify(page)[0]["body"]
    go_to(page, "History")
    history_row(page, result["id"]).get_by_role("button").click()
    wait_until_loaded(page, page.get_by_role("dialog").get_by_role("img"))

    assert any("/api/classify" in url for url in requested)
    elsewhere = [url for url in requested if not same_origin(url, origin)]
    assert elsewhere == []


def test_tablet_width_fits_without_sideways_scrolling(open_page, frontend_url, gateway, sample_xrays, screenshots):
    page = open_page(frontend_url, viewport={"width": 768, "height": 1024})
    sign_in_as_admin(page, gateway)
    choose_files(page, sample_xrays["normal"][0])
    classify(page)
    expect(page.locator("#classify .finding")).to_be_visible(timeout=SLOW)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshots(page, "tablet-classify-result")

    go_to(page, "History")
    wait_until_loaded(page, page.locator("#history tbody tr img").first)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshots(page, "tablet-history")


def same_origin(url: str, origin) -> bool:
    if url.startswith("data:"):
        return True
    parts = urlsplit(url.removeprefix("blob:"))  # blob: URLs carry the origin that created them
    return (parts.scheme, parts.netloc) == (origin.scheme, origin.netloc)
