"""Every page passes axe-core with no serious or critical violation, and one journey per role is done with the
keyboard only. Pages are filled by the seeded territory and the people of the OpenID provider (as in
test_people_sign_in, whose fixtures this module shares)."""

from __future__ import annotations

import pytest

from tests.infra.axe import violations
from tests.integration.test_coordination_pages import browser  # noqa: F401 - the shared fixture
from tests.integration.test_people_sign_in import sign_in_as, world  # noqa: F401


def axe_context(browser):  # noqa: F811
    return browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="fr-FR", timezone_id="Europe/Paris", bypass_csp=True
    )


def token_sign_in(page, base: str, token: str) -> None:
    page.goto(f"{base}/discharge/app/signin")
    page.fill("#token", token)
    page.click("#signin")


@pytest.mark.parametrize(
    ("who", "path"),
    [
        ("msp-monthureux", "/discharge/app/worklist"),
        ("cpts", "/discharge/app/board"),
        ("cpts", "/snp/app/dashboard"),
        ("hospital", "/discharge/app/hospital"),
    ],
)
def test_each_page_has_no_serious_or_critical_axe_violation(world, browser, who, path):  # noqa: F811
    context = axe_context(browser)
    page = context.new_page()
    token_sign_in(page, world.base, world.tokens[who])
    page.goto(f"{world.base}{path}")
    page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    assert violations(page) == []
    context.close()


def test_the_sign_in_and_organisation_choice_pages_have_no_serious_or_critical_axe_violation(world, browser):  # noqa: F811
    context = axe_context(browser)
    page = context.new_page()
    page.goto(f"{world.base}/discharge/app/signin")
    assert violations(page) == []
    sign_in_as(page, world.base, "double")
    page.wait_for_selector("input[name=organisation]", timeout=20_000)
    assert violations(page) == []
    context.close()


def tab_to(page, selector: str, limit: int = 150) -> None:
    """Press Tab until the focus is on the first element matching `selector` (bounded: a page where it cannot
    be reached by the keyboard fails)."""
    for _ in range(limit):
        if page.evaluate("s => document.activeElement && document.activeElement.matches(s)", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{selector} is not reachable with the keyboard")


def keyboard_sign_in(page, base: str, token: str) -> None:
    page.goto(f"{base}/discharge/app/signin")
    tab_to(page, "#token")
    page.keyboard.type(token)
    page.keyboard.press("Enter")


def test_a_team_member_reads_a_notification_and_marks_a_follow_up_done_with_the_keyboard(world, browser):  # noqa: F811
    context = axe_context(browser)
    page = context.new_page()
    keyboard_sign_in(page, world.base, world.tokens["msp-monthureux"])
    page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    tab_to(page, "#notifications button.open")
    page.keyboard.press("Enter")
    page.wait_for_selector("#reading:not([hidden])", timeout=20_000)
    assert page.evaluate("document.activeElement.id") == "reading-title"
    tab_to(page, "#reading-close")
    page.keyboard.press("Enter")
    assert page.is_hidden("#reading")
    assert page.evaluate("document.activeElement.classList.contains('open')")  # back where the reader was
    tab_to(page, "#followups button.done")
    page.keyboard.press("Enter")
    page.wait_for_selector("#status:has-text('Réponse enregistrée')", timeout=20_000)
    context.close()


def test_a_cpts_coordinator_proposes_a_team_with_the_keyboard(world, browser):  # noqa: F811
    context = axe_context(browser)
    page = context.new_page()
    keyboard_sign_in(page, world.base, world.tokens["cpts"])
    page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    tab_to(page, "#orientations tr[data-state=requested] input.team")
    page.keyboard.type(world.territory.org("msp-lamarche").id)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.classList.contains('assign')")
    page.keyboard.press("Enter")
    page.wait_for_selector("#status:has-text('Équipe proposée')", timeout=20_000)
    assert "Proposée à" in page.inner_text("#orientations")
    context.close()


def test_a_hospital_user_reads_its_handoffs_and_signs_out_with_the_keyboard(world, browser):  # noqa: F811
    context = axe_context(browser)
    page = context.new_page()
    keyboard_sign_in(page, world.base, world.tokens["hospital"])
    page.wait_for_url(f"{world.base}/discharge/app/hospital", timeout=20_000)
    page.wait_for_selector("body[data-loaded=true]", timeout=20_000)
    assert page.locator("#hospital-handoffs tbody tr").count() >= 1
    tab_to(page, "#signout")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{world.base}/discharge/app/signin", timeout=20_000)
    context.close()
