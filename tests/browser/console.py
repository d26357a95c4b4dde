"""The web console in a real headless Chromium, against the real daemon.

Run by the Rust test `browser::console_end_to_end` (tests/browser.rs), which starts the
daemon with the shipped workflows and sets the staff passwords. Environment:

  CLEARFLOW_URL           the daemon's base URL
  CLEARFLOW_STAFF         user:password of a letters-office (intake) user
  CLEARFLOW_OUTSIDER      user:password of a user without the intake role
  CLEARFLOW_SECRETS       the reporter's name, phone and ID number, separated by |
  CLEARFLOW_SCREENSHOTS   where to save screenshots of the main pages
  CLEARFLOW_REPORT        where to write what the test saw (JSON), for the Rust side

With the argument `identity` it runs the identity-read walk instead (see `identity()`),
with CLEARFLOW_STAFF the identity custodian, CLEARFLOW_CASE the complaint,
CLEARFLOW_INVESTIGATION its false-accusation investigation waiting for the leader's
approval, CLEARFLOW_APPROVER `token:task-id` of that approval task, CLEARFLOW_DRAFTER
`user:password` of the handler who drafted the case's clarification (who then tries its
self-review). With `feedback` the whistleblower reads CLEARFLOW_FEEDBACK with the
receipt code CLEARFLOW_RECEIPT.

Every step asserts what a person would see; the first failed assertion ends the run
with a non-zero exit and the page source at that moment.
"""

import hashlib
import hmac
import json
import os
import struct
import sys
import time
import base64

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

MODE = sys.argv[1] if len(sys.argv) > 1 else "console"
BASE = os.environ["CLEARFLOW_URL"].rstrip("/")
STAFF_USER, STAFF_PASSWORD = os.environ["CLEARFLOW_STAFF"].split(":", 1)
OUTSIDER_USER, OUTSIDER_PASSWORD = os.environ.get("CLEARFLOW_OUTSIDER", ":").split(":", 1)
SECRETS = [s for s in os.environ["CLEARFLOW_SECRETS"].split("|") if s]
SHOTS = os.environ["CLEARFLOW_SCREENSHOTS"]
REPORT = os.environ["CLEARFLOW_REPORT"]
NOW = int(os.environ["CLEARFLOW_NOW"])  # the daemon's manual clock, which TOTP counts on
ADMIN_TOKEN = os.environ.get("CLEARFLOW_ADMIN_TOKEN", "")
ADMIN_USER, ADMIN_PASSWORD = os.environ.get("CLEARFLOW_ADMIN", ":").split(":", 1)

report = {"axe": {}, "pages": []}


def browser(javascript=True, lang="zh-CN"):
    o = Options()
    o.binary_location = "/usr/bin/chromium"
    for flag in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1600",
        f"--lang={lang}",
    ]:
        o.add_argument(flag)
    prefs = {"intl.accept_languages": lang}
    if not javascript:
        prefs["profile.managed_default_content_settings.javascript"] = 2
    o.add_experimental_option("prefs", prefs)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)


def check(cond, what, d=None):
    if not cond:
        src = d.page_source if d is not None else ""
        print(f"FAILED: {what}\n--- page {d.current_url if d else ''} ---\n{src[:6000]}", file=sys.stderr)
        sys.exit(1)


def shows(d, text, timeout=30):
    """Whether `text` appears on the page within `timeout` s (a form post that runs
    Argon2 under a loaded machine can take a while to answer)."""
    end = time.time() + timeout
    while time.time() < end:
        if text in d.page_source:
            return True
        time.sleep(0.2)
    return False


def until(pred, timeout=30):
    """Whether `pred()` becomes true within `timeout` s. A click on a submit button
    returns before the post is answered on a loaded machine, so every check of what a
    post leads to waits for it."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            if pred():
                return True
        except Exception:  # the page is being replaced under us
            pass
        time.sleep(0.2)
    return False


def arrives(d, fragment, timeout=30):
    """Whether the browser reaches a URL containing `fragment` within `timeout` s."""
    return until(lambda: fragment in d.current_url, timeout)


def no_secrets(d, where):
    src = d.page_source
    for s in SECRETS:
        check(s not in src, f"{where}: the reporter's `{s}` is on a staff page", d)
    report["pages"].append(where)


def known_false_positive(v):
    """The axe-core that axe-selenium-python bundles predates the `one-time-code`
    autocomplete token (valid HTML, what phones use to offer a texted or generated code):
    that finding, on such fields only, is not a violation."""
    return v["id"] == "autocomplete-valid" and all(
        'autocomplete="one-time-code"' in n.get("html", "") for n in v.get("nodes", [])
    )


def axe(d, name):
    """axe-core on the page: no serious or critical violation."""
    from axe_selenium_python import Axe

    a = Axe(d)
    a.inject()
    result = a.run()
    bad = [
        v
        for v in result["violations"]
        if v.get("impact") in ("serious", "critical") and not known_false_positive(v)
    ]
    report["axe"][name] = {
        "violations": len(result["violations"]),
        "serious_or_critical": [v["id"] for v in bad],
    }
    check(not bad, f"axe on {name}: {[(v['id'], v['help']) for v in bad]}", d)


def shot(d, name):
    os.makedirs(SHOTS, exist_ok=True)
    d.save_screenshot(os.path.join(SHOTS, f"{name}.png"))


def totp(secret_b32, at=None):
    key = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    step = int((at or NOW) // 30)
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[off : off + 4])[0] & 0x7FFFFFFF) % 1_000_000
    return f"{code:06d}"


def inbox_link(d, text, timeout=60):
    """The inbox link whose text contains `text`, once the engine has made the task."""
    end = time.time() + timeout
    while time.time() < end:
        d.get(BASE + "/inbox")
        links = d.find_elements(By.PARTIAL_LINK_TEXT, text)
        if links:
            return links[0]
        time.sleep(0.5)
    return None


def fill(d, name, value):
    el = d.find_element(By.NAME, name)
    el.clear()
    el.send_keys(value)


def sign_in(d, user, password, enrol=True):
    d.get(BASE + "/sign-in")
    fill(d, "user", user)
    fill(d, "password", password)
    d.find_element(By.CSS_SELECTOR, "form[action='/sign-in'] button").click()
    until(lambda: "/enrol" in d.current_url or "/inbox" in d.current_url or 'role="alert"' in d.page_source)
    if "/enrol" in d.current_url:
        secret = d.find_element(By.CSS_SELECTOR, "main code").text.strip()
        check(shows(d, "<svg"), "the enrolment page shows a QR code", d)
        if "enrol" not in report["axe"]:  # the first enrolment of a run, in a browser with script
            axe(d, "enrol")
        codes = [c.text for c in d.find_elements(By.CSS_SELECTOR, "main li code")]
        check(len(codes) == 10, "ten recovery codes are shown", d)
        shot(d, "enrol")
        fill(d, "code", totp(secret))
        d.find_element(By.CSS_SELECTOR, "form[action='/enrol'] button").click()
        # Wait for the answer: navigating away first would abort the post.
        arrives(d, "/inbox")
        return secret
    return None


def main():
    # ---- 1. the whistleblower files a real-name complaint with JavaScript off -------
    wb = browser(javascript=False)
    wb.get(BASE + "/report")
    check(wb.find_elements(By.NAME, "accused.name"), "the form has the accused's name", wb)
    check(not wb.find_elements(By.NAME, "accused.email"), "the form does not ask for the accused's email", wb)
    check(not wb.find_elements(By.NAME, "case_number"), "the form does not ask for a case number", wb)
    # axe needs script, which the whistleblower's browser has off: a second browser
    # with script on walks the same public pages for it.
    ax = browser(javascript=True)
    ax.get(BASE + "/report")
    axe(ax, "report")
    shot(wb, "report")
    # First without the required content: errors next to the field, input kept.
    fill(wb, "accused.name", "王某")
    fill(wb, "allegation", "违规收受礼金")
    wb.find_element(By.CSS_SELECTOR, "input[name='kind'][value='real_name']").click()
    fill(wb, "reporter.name", SECRETS[0])
    fill(wb, "reporter.phone", SECRETS[1])
    fill(wb, "reporter.id_number", SECRETS[2])
    wb.find_element(By.CSS_SELECTOR, "form[action='/report'] button").click()
    check(until(lambda: wb.find_elements(By.ID, "content-err")), "the missing content is flagged next to its field", wb)
    check(wb.find_element(By.NAME, "accused.name").get_attribute("value") == "王某", "typed input is kept", wb)
    fill(wb, "content", "2026年春节前后多次收受管理服务对象所送礼金，金额较大。")
    wb.find_element(By.CSS_SELECTOR, "form[action='/report'] button").click()
    check(shows(wb, 'class="receipt"'), "the receipt page opens", wb)
    receipt = wb.find_element(By.CSS_SELECTOR, ".receipt").text.strip()
    check(len(receipt) >= 8, "a receipt code is shown", wb)
    check(receipt not in wb.current_url, "the receipt is not in the URL", wb)
    fill(ax, "accused.name", "李某")
    fill(ax, "allegation", "违规经商")
    fill(ax, "content", "匿名反映：利用职务便利为亲属经营活动谋利。")
    ax.find_element(By.CSS_SELECTOR, "form[action='/report'] button").click()
    check(shows(ax, 'class="receipt"'), "an anonymous complaint gets a receipt too", ax)
    axe(ax, "receipt")
    shot(wb, "receipt")
    report["receipt_shown"] = True

    # ---- 2. staff sign in with password and TOTP ------------------------------------
    st = browser(javascript=True)
    # A form post without the CSRF token is refused (the session exists after sign-in).
    secret = sign_in(st, STAFF_USER, STAFF_PASSWORD)
    check(arrives(st, "/inbox"), "signed in, the inbox opens", st)
    axe(st, "inbox")
    # The registration task of the web complaint, then screening.
    link = inbox_link(st, "登记被反映人信息")
    check(link, "the registration task is in the inbox", st)
    no_secrets(st, "inbox")
    shot(st, "inbox")
    link.click()
    axe(st, "task")
    # Missing a required field: the error is next to it, input kept.
    fill(st, "id", "P-1001")
    fill(st, "position", "科长")
    fill(st, "email", "wang@jw.example.cn")
    fill(st, "head_name", "赵处长")
    st.find_element(By.CSS_SELECTOR, "form[action$='/complete'] button").click()
    check(until(lambda: st.find_elements(By.ID, "head_email-err")), "the missing field is flagged", st)
    check(st.find_element(By.NAME, "position").get_attribute("value") == "科长", "typed input is kept", st)
    shot(st, "task-errors")
    # Completed with the keyboard only.
    field = st.find_element(By.NAME, "head_email")
    field.send_keys("zhao@jw.example.cn")
    field.send_keys(Keys.ENTER)
    check(arrives(st, "/cases/"), "after completing, the case page opens", st)
    case_url = st.current_url
    axe(st, "case")
    no_secrets(st, "case")
    shot(st, "case")
    check(shows(st, "step waiting"), "the next step is highlighted", st)

    # The screening task next.
    link = inbox_link(st, "受理审查")
    check(link, "the screening task is in the inbox", st)
    link.click()
    no_secrets(st, "task")
    st.find_element(By.CSS_SELECTOR, "input[name='decision'][value='accept']").click()
    st.find_element(By.CSS_SELECTOR, "form[action$='/complete'] button").click()
    check(arrives(st, "/cases/"), "screening completed", st)

    # A CSRF-less post is refused.
    st.execute_script(
        "const f=document.createElement('form');f.method='post';f.action=arguments[0];"
        "const t=document.createElement('textarea');t.name='message';t.value='x';f.appendChild(t);"
        "document.body.appendChild(f);f.submit();",
        case_url + "/messages",
    )
    check(until(lambda: "403" in st.title or "没有权限" in st.page_source), "a post without the CSRF token is refused", st)

    # Staff writes to the whistleblower.
    st.get(case_url)
    fill(st, "message", "请补充有关证据材料。")
    st.find_element(By.CSS_SELECTOR, "form[action$='/messages'] button").click()
    check(shows(st, "请补充有关证据材料"), "the office's message is on the case page", st)

    # ---- 3. the whistleblower follows the case and answers ---------------------------
    ax.get(BASE + "/follow")
    axe(ax, "follow")
    wb.get(BASE + "/follow")
    fill(wb, "receipt", receipt)
    wb.find_element(By.CSS_SELECTOR, "form[action='/follow'] button").click()
    check(shows(wb, "请补充有关证据材料"), "the whistleblower sees the office's message", wb)
    ax.get(BASE + "/follow")
    fill(ax, "receipt", receipt)
    ax.find_element(By.CSS_SELECTOR, "form[action='/follow'] button").click()
    axe(ax, "status")
    shot(wb, "status")
    fill(wb, "message", "证据已通过邮寄方式提交。")
    wb.find_element(By.CSS_SELECTOR, "form[action='/follow/message'] button").click()
    check(shows(wb, "证据已通过邮寄方式提交"), "the whistleblower's message is shown", wb)
    st.get(case_url)
    check(shows(st, "证据已通过邮寄方式提交"), "staff see the whistleblower's message", st)
    no_secrets(st, "case with messages")

    # ---- 4. refusals as users see them -----------------------------------------------
    out = browser(javascript=True, lang="en")
    sign_in(out, OUTSIDER_USER, OUTSIDER_PASSWORD)
    out.get(case_url)
    check("You may not" in out.page_source or "您没有权限" in out.page_source, "a user without the role gets 403 and no data", out)
    check("请补充" not in out.page_source, "no case data is shown to them", out)
    axe(out, "forbidden")
    # Lockout after repeated failures.
    lock = browser(javascript=False)
    for _ in range(6):
        lock.get(BASE + "/sign-in")
        fill(lock, "user", OUTSIDER_USER)
        fill(lock, "password", "wrong password 123")
        lock.find_element(By.CSS_SELECTOR, "form[action='/sign-in'] button").click()
        # Wait for the answer: navigating away first would abort the post.
        check(shows(lock, 'role="alert"'), "a wrong password is refused", lock)
    fill(lock, "user", OUTSIDER_USER)
    fill(lock, "password", OUTSIDER_PASSWORD)
    lock.find_element(By.CSS_SELECTOR, "form[action='/sign-in'] button").click()
    check(shows(lock, "尝试次数过多"), "the account is locked after repeated failures", lock)
    ax.get(BASE + "/sign-in")
    axe(ax, "sign-in")

    # ---- administration, every section under axe ---------------------------------------
    ad = browser(javascript=True)
    sign_in(ad, ADMIN_USER, ADMIN_PASSWORD)
    for section in ["workflows", "instances", "outbox", "schedules", "audit", "users"]:
        ad.get(BASE + f"/admin/{section}")
        check(shows(ad, "<table"), f"the {section} administration page lists its rows", ad)
        axe(ad, f"admin-{section}")
    no_secrets(ad, "administration")
    shot(ad, "admin-outbox")
    ad.quit()

    # ---- 5. session expiry on the daemon's (manual) clock -----------------------------
    import urllib.request

    req = urllib.request.Request(
        BASE + "/v1/admin/clock",
        data=json.dumps({"advance_ms": 31 * 60 * 1000}).encode(),
        headers={"Authorization": "Bearer " + ADMIN_TOKEN, "Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(req).read()
    st.get(BASE + "/inbox")
    report["session_expired"] = arrives(st, "/sign-in")

    report["receipt"] = receipt
    report["totp_enrolled"] = secret is not None
    report["case_url"] = case_url
    with open(REPORT, "w") as f:
        json.dump(report, f, ensure_ascii=False, indent=2)
    for d in (wb, st, out, lock, ax):
        d.quit()


def sign_in_without_script(d, user, password):
    """sign_in() for a browser with JavaScript off (the same pages, no script needed)."""
    sign_in(d, user, password)
    check(arrives(d, "/inbox"), f"{user} is signed in", d)


def feedback():
    """The whistleblower, script off, reads the feedback with the receipt code."""
    receipt = os.environ["CLEARFLOW_RECEIPT"]
    text = os.environ["CLEARFLOW_FEEDBACK"]
    wb = browser(javascript=False)
    wb.get(BASE + "/follow")
    fill(wb, "receipt", receipt)
    wb.find_element(By.CSS_SELECTOR, "form[action='/follow'] button").click()
    check(shows(wb, text), "the whistleblower reads the feedback", wb)
    check("已反馈" in wb.page_source, "the stage says feedback was given", wb)
    check(receipt not in wb.current_url, "the receipt is not in the URL", wb)
    shot(wb, "status-feedback")
    ax = browser(javascript=True)
    ax.get(BASE + "/follow")
    fill(ax, "receipt", receipt)
    ax.find_element(By.CSS_SELECTOR, "form[action='/follow'] button").click()
    check(shows(ax, text), "the same page with script on, for axe", ax)
    axe(ax, "status-feedback")
    report["feedback_seen"] = True
    with open(REPORT, "w") as f:
        json.dump(report, f, ensure_ascii=False, indent=2)
    wb.quit()
    ax.quit()


def api(path, token, body=None):
    import urllib.request

    req = urllib.request.Request(
        BASE + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")


def identity():
    """The identity custodian reads a real-name reporter's identity through the case page:
    not through the complaint (its workflow allows none), not before the leader's
    approval, then with a reason once approved; nothing of it on any other page."""
    complaint = os.environ["CLEARFLOW_CASE"]
    investigation = os.environ["CLEARFLOW_INVESTIGATION"]
    approver_token, approval_task = os.environ["CLEARFLOW_APPROVER"].split(":", 1)
    st = browser(javascript=True)
    secret = sign_in(st, STAFF_USER, STAFF_PASSWORD)
    check(arrives(st, "/inbox"), "the custodian is signed in", st)
    read_form = "form[action$='/identity']"

    # Through the complaint: the workflow allows no read, and says so.
    st.get(BASE + f"/cases/{complaint}")
    check(shows(st, "本流程不允许通过本案查阅举报人身份"), "the complaint's rule is stated", st)
    check(not st.find_elements(By.CSS_SELECTOR, read_form), "no read form on the complaint", st)
    no_secrets(st, "complaint case")

    # Through the investigation, before the approval: pending, named, no form.
    st.get(BASE + f"/cases/{investigation}")
    check(shows(st, "须经批准后方可查阅"), "the pending approval is stated", st)
    check("identity_request" in st.page_source, "the approval step is named", st)
    check(not st.find_elements(By.CSS_SELECTOR, read_form), "no read form before the approval", st)
    no_secrets(st, "investigation before approval")

    # The leader approves (through the API, as the leader).
    api(f"/v1/tasks/{approval_task}/complete", approver_token, {"form": {"granted": True}})

    def approved():
        st.get(BASE + f"/cases/{investigation}")
        return st.find_elements(By.CSS_SELECTOR, read_form)

    check(until(approved, 60), "after the approval the read form is offered", st)
    check(shows(st, "已批准查阅"), "the approval is stated", st)
    check("zhou.jian" in st.page_source, "the approver is named", st)
    axe(st, "case-identity")
    shot(st, "case-identity")
    no_secrets(st, "investigation after approval")

    # The reason is required (the browser will not send the form without it).
    st.find_element(By.CSS_SELECTOR, read_form + " button").click()
    time.sleep(0.5)
    check("/identity" not in st.current_url or "本次查阅已记入审计日志" not in st.page_source,
          "no read without a reason", st)
    reason = "诬告陷害调查需要，经分管领导批准（网页）"
    st.get(BASE + f"/cases/{investigation}")
    fill(st, "reason", reason)
    st.find_element(By.CSS_SELECTOR, read_form + " button").click()
    check(shows(st, "本次查阅已记入审计日志"), "the identity page says the read is recorded", st)
    for s in SECRETS:
        check(s in st.page_source, f"the identity page shows `{s}`", st)
    check(reason in st.page_source, "the reason given is shown", st)
    axe(st, "identity")
    st.get(BASE + "/inbox")
    no_secrets(st, "inbox after the read")

    # ---- separation of duties as the drafter sees it ---------------------------------
    drafter_user, drafter_password = os.environ["CLEARFLOW_DRAFTER"].split(":", 1)
    dr = browser(javascript=False)
    sign_in_without_script(dr, drafter_user, drafter_password)
    link = inbox_link(dr, "自审")
    check(link, "the self-review task is in the drafter's inbox (the role's pool)", dr)
    link.click()
    claim = "form[action$='/claim'] button"
    complete = "form[action$='/complete'] button"
    refused = lambda: "不得兼审" in dr.page_source
    check(until(lambda: dr.find_elements(By.CSS_SELECTOR, claim) or dr.find_elements(By.CSS_SELECTOR, complete)),
          "the task page offers the task", dr)
    if dr.find_elements(By.CSS_SELECTOR, claim):
        dr.find_element(By.CSS_SELECTOR, claim).click()
        until(lambda: refused() or dr.find_elements(By.CSS_SELECTOR, complete))
    if not refused():
        dr.find_element(By.CSS_SELECTOR, complete).click()
    check(shows(dr, "不得兼审：您已经办理过本案的另一审级"), "the drafter is told plainly why not", dr)
    shot(dr, "separation-of-duties")
    report["separation_seen"] = True
    dr.quit()

    report["totp_secret"] = secret
    report["reason"] = reason
    with open(REPORT, "w") as f:
        json.dump(report, f, ensure_ascii=False, indent=2)
    st.quit()


if __name__ == "__main__":
    {"identity": identity, "feedback": feedback}.get(MODE, main)()
