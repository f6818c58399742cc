// Drives HEPop's web UI in the system's headless Chromium (Debian), as a user
// would: the page without a token, then search, a call's ladder, a message's
// raw SIP, the RTCP summary, the PCAP download and the SQL console. Prints
// what it saw as one JSON line; exits non-zero at the first thing missing.
// usage: node call_view.js <base url> <token> <call-id> <from ms> <to ms>
const { WAIT, fail, fillSearch, run } = require('./browser');

const [base, token, callId, fromMs, toMs] = process.argv.slice(2);

run(base, async (page) => {
  // The search form, for the call's range.
  await fillSearch(page, fromMs, toMs, { call_id: callId });

  // Without the token, the API's 401 is shown and says what to do.
  await page.click('#search button[type=submit]');
  await page.waitForFunction(() => !document.querySelector('#error').hidden, WAIT);
  const unauthorized = await page.$eval('#error', (e) => e.textContent);
  if (!unauthorized.includes('API token')) fail(`without a token: ${unauthorized}`);

  await page.type('#token', token);
  await page.$eval('#token', (e) => e.dispatchEvent(new Event('change')));
  await page.click('#search button[type=submit]');
  await page.waitForSelector('#results tr.call', WAIT);
  const results = await page.$$eval('#results tr.call', (rows) => rows.map((r) => r.dataset.callId));
  if (!results.includes(callId)) fail(`results ${results} lack ${callId}`);

  // The call: ladder across legs, a message's raw SIP, RTCP, logs.
  await page.click(`#results tr.call[data-call-id="${callId}"]`);
  await page.waitForSelector('#ladder g.msg', WAIT);
  const ladder = await page.evaluate(() => ({
    hosts: [...document.querySelectorAll('#ladder text.host')].map((t) => t.textContent),
    arrows: document.querySelectorAll('#ladder g.msg line').length,
    labels: [...document.querySelectorAll('#ladder g.msg text.label')].map((t) => t.textContent),
    legs: document.querySelector('#legs').textContent,
  }));
  await page.click('#ladder g.msg text.label');
  const raw = await page.$eval('#raw', (e) => e.textContent);
  if (!raw.includes('SIP/2.0') || !raw.includes('Call-ID:')) fail(`raw message: ${raw.slice(0, 200)}`);
  const rtcp = await page.$$eval('#rtcp-summary tbody tr', (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
  const logs = await page.$$eval('#logs li', (items) => items.map((i) => i.textContent));

  // The PCAP, fetched with the token and saved.
  await page.click('#pcap');
  await page.waitForFunction(() => document.querySelector('#download-status').textContent.includes('bytes'), WAIT);
  const download = await page.$eval('#download-status', (e) => e.textContent);

  // The SQL console.
  await page.click('#tab-sql');
  await page.$eval('#sql', (e, id) => { e.value = `SELECT count(*) AS n FROM hep_1 WHERE call_id = '${id}'`; }, callId);
  await page.click('#run');
  await page.waitForFunction(() => document.querySelector('#sql-status').textContent.includes('rows'), WAIT);
  const sql = await page.$$eval('#sql-result tbody td', (cells) => cells.map((c) => c.textContent));

  return { unauthorized, results, ladder, raw: raw.split('\n')[0], rtcp, logs, download, sql };
});
