// What the UI drivers share: the system's headless Chromium, a page of the
// server at `base` that must load nothing from elsewhere and break no
// Content-Security-Policy, and one JSON line of what the driver saw.
const puppeteer = require('puppeteer-core');

const chromium = process.env.CHROMIUM || '/usr/bin/chromium';
const WAIT = { timeout: 30000 };

function fail(message) {
  console.error(`UI: ${message}`);
  process.exit(1);
}

// Runs `drive(page)` on a new page; prints what it returns as JSON.
async function withPage(base, drive) {
  const browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    // The server's Content-Security-Policy must fit the UI: a refusal is logged as an error.
    page.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) errors.push(m.text());
    });
    // Only this server: the UI loads nothing from elsewhere.
    const elsewhere = [];
    page.on('request', (r) => {
      const url = r.url();
      // data: and blob: URLs are the browser's own (form icons, the download), not the network.
      if (!url.startsWith(base) && !/^(data|blob):/.test(url)) elsewhere.push(url);
    });
    const res = await page.goto(`${base}/`, { waitUntil: 'load' });
    if (!res.url().endsWith('/ui/')) fail(`/ led to ${res.url()}`);
    const seen = await drive(page);
    if (errors.length) fail(`page errors: ${errors}`);
    if (elsewhere.length) fail(`requests elsewhere: ${elsewhere}`);
    console.log(JSON.stringify(seen));
  } finally {
    await browser.close();
  }
}

// Fills the search form: its range (ms) and the fields given.
async function fillSearch(page, fromMs, toMs, fields) {
  await page.evaluate(([from, to, fields]) => {
    const f = document.querySelector('#search');
    const local = (ms) => { const d = new Date(Number(ms)); return new Date(d - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19); };
    f.from.value = local(from);
    f.to.value = local(to);
    for (const [k, v] of Object.entries(fields)) f[k].value = v;
  }, [fromMs, toMs, fields]);
}

function run(base, drive) {
  withPage(base, drive).catch((e) => fail(e.stack || String(e)));
}

module.exports = { WAIT, fail, fillSearch, run };
