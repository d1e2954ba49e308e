"""The docs' picture of the playground: `python scripts/playground_screenshot.py` (about a minute; needs
Playwright and Chromium, `apt-get install chromium`, and the Tiny Shakespeare files or a mirror).

It serves the shipped runs, compares the shipped linear and transformer rows on the start of Tiny Shakespeare's test
split, hovers one token and writes docs/images/playground-compare.png.
"""

import shutil
import sys
import threading
from pathlib import Path

from playwright.sync_api import sync_playwright

from tinylm.paths import Paths
from tinylm.run_folders import reference_dir
from tinylm.web.playground import Playground
from tinylm.web.server import make_server

OUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "playground-compare.png"
RUNS = ("transformer", "linear")


def main() -> int:
    playground = Playground(Paths.of())
    shipped = {e.model: e.id for e in playground.runs() if e.id.startswith("reference/")
               and e.dataset == "tinyshakespeare"}
    if reference_dir() is None or not all(m in shipped for m in RUNS):
        print("the shipped Tiny Shakespeare runs were not found; run this from the repository", file=sys.stderr)
        return 1
    server = make_server(playground, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1180, "height": 900})
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        for model in RUNS:
            page.check(f"#compare-runs input[value='{shipped[model]}']")
        page.click("#passage")
        page.wait_for_function("document.getElementById('text').value.length > 100")
        page.fill("#text", page.input_value("#text")[:420])
        page.click("#run-compare")
        page.wait_for_selector(".panel.diff")
        page.select_option("#diff-a", "1")  # transformer minus linear (the panels follow the list's order)
        page.select_option("#diff-b", "0")
        page.locator(".panel.model .tok").nth(57).hover()
        page.screenshot(path=str(OUT), full_page=True)
        browser.close()
    server.shutdown()
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
