// Drives a link's stats page (/{code}+) in Debian's Chromium.
//
//   node stats_page.mjs BASE_URL PUBLIC_CODE PRIVATE_CODE KEY OUT_DIR
//
// PUBLIC_CODE was made with "public_stats": true and has clicks in the last
// day; PRIVATE_CODE was not, and KEY (stats:read) belongs to its owner.
// Checks: no console errors, nothing loaded from anywhere but BASE_URL,
// the totals shown equal the API's, switching the range redraws the chart,
// the CSV button downloads every click, the page fits a phone, and an
// owner's key opens a private link's page. Screenshots go to OUT_DIR.
// Exits non-zero with a message on the first failure.
import { chromium } from "playwright-core";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const [base, publicCode, privateCode, key, outDir] = process.argv.slice(2);
if (!outDir) {
  console.error("usage: stats_page.mjs BASE_URL PUBLIC_CODE PRIVATE_CODE KEY OUT_DIR");
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });
const origin = new URL(base).origin;

function check(ok, message) {
  if (!ok) throw new Error(message);
}

async function api(path, withKey) {
  const r = await fetch(`${base}${path}`, withKey ? { headers: { Authorization: `Bearer ${key}` } } : {});
  check(r.ok, `${path} answered ${r.status}`);
  return r.json();
}

/// Console errors, page errors and requests elsewhere, per page.
function watch(page, allowed = () => false) {
  const problems = [];
  page.on("console", (m) => {
    if (m.type() === "error" && !allowed(m)) problems.push(`console error: ${m.text()} at ${JSON.stringify(m.location())}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("request", (r) => {
    const u = new URL(r.url());
    if (!["data:", "blob:"].includes(u.protocol) && u.origin !== origin) problems.push(`request outside the service: ${r.url()}`);
  });
  return problems;
}

async function shownTotal(page) {
  await page.waitForSelector("#total-clicks[data-value]");
  await page.waitForFunction(() => !document.body.hasAttribute("aria-busy"));
  const text = await page.textContent("#total-clicks");
  const value = await page.getAttribute("#total-clicks", "data-value");
  check(text.replace(/[^0-9]/g, "") === value, `the total shown (${text}) is not its value (${value})`);
  return Number(value);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const report = {};
try {
  // Desktop, public link.
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  const page = await context.newPage();
  const problems = watch(page);
  const response = await page.goto(`${base}/${publicCode}+`);
  check(response.status() === 200, `/${publicCode}+ answered ${response.status()}`);
  const shown7d = await shownTotal(page);
  const api7d = await api(`/api/v1/public/links/${publicCode}/stats?since=7d&by=day`);
  check(shown7d === api7d.clicks, `7d: the page shows ${shown7d} clicks, the API says ${api7d.clicks}`);
  check(api7d.clicks > 0, "the public link has no clicks to show");
  const uniques = Number(await page.getAttribute("#unique-visitors", "data-value"));
  check(uniques === api7d.unique_visitors, `unique visitors: page ${uniques}, API ${api7d.unique_visitors}`);
  const chart7d = await page.innerHTML("#chart");
  const buckets7d = Number(await page.getAttribute("#chart svg", "data-buckets"));
  check(buckets7d === api7d.series.length, `7d chart has ${buckets7d} bars, the API series ${api7d.series.length}`);
  const referrers = await page.$$eval("#referrers li .name", (els) => els.map((e) => e.textContent));
  check(JSON.stringify(referrers) === JSON.stringify(api7d.referrers.map((r) => r.value)), `referrers shown ${referrers}`);
  await page.screenshot({ path: join(outDir, "stats-page.png"), fullPage: true });

  await page.click('#range-picker button[data-range="24h"]');
  await page.waitForFunction(() => document.querySelector("#chart svg")?.dataset.by === "hour");
  const shown24h = await shownTotal(page);
  const chart24h = await page.innerHTML("#chart");
  const api24h = await api(`/api/v1/public/links/${publicCode}/stats?since=24h&by=hour`);
  check(chart24h !== chart7d, "switching to 24h did not change the chart");
  check(shown24h === api24h.clicks, `24h: the page shows ${shown24h}, the API says ${api24h.clicks}`);
  const buckets24h = Number(await page.getAttribute("#chart svg", "data-buckets"));
  check(buckets24h === api24h.series.length && buckets24h >= 24, `24h chart has ${buckets24h} bars`);

  await page.click('#range-picker button[data-range="30d"]');
  await page.waitForFunction(() => document.querySelector("#chart svg")?.dataset.by === "day");
  await page.waitForFunction(() => Number(document.querySelector("#chart svg")?.dataset.buckets) >= 30);
  const chart30d = await page.innerHTML("#chart");
  check(chart30d !== chart24h && chart30d !== chart7d, "switching to 30d did not change the chart");

  // The CSV button: a header, then every click of the range (bots too).
  const api30d = await api(`/api/v1/public/links/${publicCode}/stats?since=30d&include_bots=true`);
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#csv")]);
  const csvPath = join(outDir, `${publicCode}-clicks.csv`);
  await download.saveAs(csvPath);
  const lines = readFileSync(csvPath, "utf8").trimEnd().split("\n");
  check(lines[0].startsWith("time,code,"), `CSV header: ${lines[0]}`);
  check(lines.length - 1 === api30d.clicks, `CSV has ${lines.length - 1} clicks, the API ${api30d.clicks}`);
  check(problems.length === 0, problems.join("\n"));
  report.public = { clicks7d: shown7d, clicks24h: shown24h, csvRows: lines.length - 1 };
  await context.close();

  // A phone: nothing wider than the screen.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  const phonePage = await phone.newPage();
  const phoneProblems = watch(phonePage);
  await phonePage.goto(`${base}/${publicCode}+`);
  check((await shownTotal(phonePage)) === api7d.clicks, "the phone page shows another total");
  const overflow = await phonePage.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `the phone page is ${overflow}px wider than the screen`);
  await phonePage.screenshot({ path: join(outDir, "stats-page-phone.png"), fullPage: true });
  check(phoneProblems.length === 0, phoneProblems.join("\n"));
  await phone.close();

  // A private link: 404 without a key, the owner's stats with one. The
  // 404 of the page itself is the only error the console may show.
  const owner = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const ownerPage = await owner.newPage();
  const ownerProblems = watch(ownerPage, (m) => m.text().includes("status of 404") && m.location().url.endsWith(`/${privateCode}+`));
  const locked = await ownerPage.goto(`${base}/${privateCode}+`);
  check(locked.status() === 404, `/${privateCode}+ answered ${locked.status()} without a key`);
  check(await ownerPage.isVisible("#locked"), "the locked notice is not shown");
  check(!(await ownerPage.isVisible("#stats")), "a private link's stats are shown without a key");
  await ownerPage.fill("#key-input", key);
  await ownerPage.click('#key-form button[type="submit"]');
  const ownerShown = await shownTotal(ownerPage);
  const ownerApi = await api(`/api/v1/links/${privateCode}/stats?since=7d&by=day`, true);
  check(ownerShown === ownerApi.clicks, `owner: the page shows ${ownerShown}, the API says ${ownerApi.clicks}`);
  const stored = await ownerPage.evaluate(() => [sessionStorage.length, localStorage.length]);
  check(stored[0] === 1 && stored[1] === 0, `the key is kept in ${JSON.stringify(stored)} (session, local) items`);
  await ownerPage.screenshot({ path: join(outDir, "stats-page-owner.png"), fullPage: true });
  check(ownerProblems.length === 0, ownerProblems.join("\n"));
  report.owner = { clicks7d: ownerShown };
  await owner.close();
  console.log(JSON.stringify(report));
} catch (e) {
  console.error(`stats page: ${e.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
