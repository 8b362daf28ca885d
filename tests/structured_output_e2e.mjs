// The client side of tests/structured_output_e2e_test.cpp, run by node with the npm folder
// scripts/setup.sh fills (openai, ajv, ajv-formats, ajv-draft-04, zod). Three modes, each
// printing one JSON line per failure ({"fail": ...}) and a last line {"summary": ...}:
//   schemas NPM URL CANDIDATES N CONCURRENCY MAX_TOKENS
//     CANDIDATES: [{file, schema}] that the grammar compiles in strict mode, in sorted
//     order; those ajv compiles too are kept and N of them, evenly spaced, are sent as
//     chat requests with response_format json_schema strict:true (temperature 1, seed
//     1000 + i), CONCURRENCY in flight; every reply must parse and validate.
//   zod NPM URL      the OpenAI client's zodResponseFormat + beta.chat.completions.parse
//   tools NPM URL    tool_choice "required" with two functions through the OpenAI client
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import path from 'node:path';

const [mode, npm, url, ...rest] = process.argv.slice(2);
const require = createRequire(path.join(npm, 'package.json'));
const modules = path.join(npm, 'node_modules');

const AjvDraft07 = require('ajv').default;
const Ajv2019 = require('ajv/dist/2019').default;
const Ajv2020 = require('ajv/dist/2020').default;
const AjvDraft04 = require('ajv-draft-04');
const addFormats = require('ajv-formats').default;

/// The validator classes to try for a schema, by its $schema: the draft it declares, and
/// for none the grammar's reading (2019-09: $ref's siblings apply, `items` may be a tuple),
/// then draft 4 (boolean exclusiveMinimum) and 2020-12 (prefixItems).
function drafts(schema) {
  const s = typeof schema === 'object' && schema !== null ? String(schema.$schema ?? '') : '';
  if (s.includes('draft-04') || s.includes('draft-03')) return [['draft-04', AjvDraft04]];
  if (s.includes('draft-06') || s.includes('draft-07')) return [['draft-07', AjvDraft07]];
  if (s.includes('2019-09')) return [['2019-09', Ajv2019]];
  if (s.includes('2020-12')) return [['2020-12', Ajv2020]];
  const text = JSON.stringify(schema);
  const none = [['2019-09', Ajv2019], ['draft-04', AjvDraft04], ['2020-12', Ajv2020]];
  return text.includes('"prefixItems"') ? [none[2], none[0], none[1]] : none;
}

/// The formats JSON Schema defines (2020-12 validation, section 7.3) that ajv-formats
/// checks. The others it knows are not JSON Schema's: OpenAPI's int32, int64, float,
/// double, byte, binary and password, and its own url, iso-time, iso-date-time and
/// json-pointer-uri-fragment. For JSON Schema an unknown format is an annotation, and the
/// grammar leaves it unchecked (MaskBench's Kubernetes schemas say "int32" on integers
/// that have no bounds), so ajv must not hold replies to them either.
const json_schema_formats = ['date', 'time', 'date-time', 'duration', 'uri', 'uri-reference',
  'uri-template', 'email', 'hostname', 'ipv4', 'ipv6', 'regex', 'uuid', 'json-pointer',
  'relative-json-pointer'];

/// ajv's validate function for `schema`, with the draft it was compiled for; or the
/// reason no draft compiles it. strict:false: MaskBench's schemas hold unknown keywords
/// and formats, which are annotations. A pattern that is not a valid Unicode-mode regex
/// ("\-", "\:") is tried again without the u flag, as ECMA-262's plain mode reads it.
function compile(schema) {
  const why = [];
  for (const [draft, Ajv] of drafts(schema)) {
    for (const unicodeRegExp of [true, false]) {
      try {
        const ajv = new Ajv({ strict: false, allErrors: true, validateSchema: false, logger: false,
          unicodeRegExp });
        addFormats(ajv, json_schema_formats);
        return { draft, validate: ajv.compile(schema) };
      } catch (e) {
        why.push(`${draft}${unicodeRegExp ? '' : ' (no u flag)'}: ${e.message}`);
      }
    }
  }
  return { error: why.join('; ') };
}

/// Where the grammar's formats are documented to be looser than ajv's
/// (runtime/grammar/json_schema.cpp, format_regex): a reply that breaks ajv's format only
/// in one of these ways is a known difference, printed as such and counted, not a failure.
/// Anything else a format error shows still fails.
const full_formats = require('ajv-formats/dist/formats').fullFormats;
function ajv_format_ok(format, v) {
  const f = full_formats[format];
  const check = typeof f === 'object' && !(f instanceof RegExp) ? f.validate : f;
  return check instanceof RegExp ? check.test(v) : check(v);
}
function known_difference(format, v) {
  if (typeof v !== 'string') return null;
  if (format === 'uri' && /^[a-zA-Z][a-zA-Z0-9+.-]*:\S*$/.test(v)) {
    return 'uri: the grammar checks "scheme:rest" (rest: no white space), not RFC 3986';
  }
  if (format === 'email' && /^[^\s@"]+@[^\s@"]+$/.test(v)) {
    return 'email: the grammar checks "something@something", not RFC 5321';
  }
  if ((format === 'date' || format === 'date-time') && /^\d{4}-02-29/.test(v) &&
      ajv_format_ok(format, v.replace(/^(\d{4})-02-29/, '$1-02-28'))) {
    return `${format}: the grammar allows February 29 in any year`;
  }
  const leap = /^(.*\d\d:\d\d):60/;
  if ((format === 'time' || format === 'date-time') && leap.test(v) &&
      ajv_format_ok(format, v.replace(leap, '$1:59'))) {
    return `${format}: the grammar allows a leap second (:60) at any time, not only 23:59:60 UTC`;
  }
  return null;
}

/// The value at JSON pointer `ptr` of `doc`.
function at(doc, ptr) {
  return ptr.split('/').slice(1).map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce((v, t) => (v == null ? v : v[t]), doc);
}

/// Every string-valued "format" in `schema` (a tally of what the run covered).
function formats_in(schema, out) {
  if (Array.isArray(schema)) {
    schema.forEach((x) => formats_in(x, out));
  } else if (typeof schema === 'object' && schema !== null) {
    for (const [k, v] of Object.entries(schema)) {
      if (k === 'format' && typeof v === 'string') out[v] = (out[v] ?? 0) + 1;
      else formats_in(v, out);
    }
  }
  return out;
}

async function post(pathname, body) {
  const r = await fetch(url + pathname, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  return { status: r.status, text: await r.text() };
}

async function schemas() {
  const [candidates_file, n_str, concurrency_str, max_tokens_str] = rest;
  const n = Number(n_str);
  const candidates = JSON.parse(readFileSync(candidates_file, 'utf8'));
  const usable = [];
  let ajv_refused = 0;
  for (const c of candidates) {
    const v = compile(c.schema);
    if (v.validate) {
      usable.push({ ...c, ...v });
    } else {
      ++ajv_refused;
      console.log(JSON.stringify({ note: 'ajv cannot compile', file: c.file, why: v.error.slice(0, 300) }));
    }
  }
  const picked = [];
  for (let i = 0; i < Math.min(n, usable.length); ++i) {
    picked.push(usable[Math.floor((i * usable.length) / Math.min(n, usable.length))]);
  }
  const counts = { sent: 0, valid: 0, invalid: 0, known_differences: 0, http_errors: 0, finish: {},
    drafts: {}, tokens: 0, formats: {} };
  picked.forEach((c) => formats_in(c.schema, counts.formats));
  const times = [];
  let next = 0;
  async function worker() {
    while (next < picked.length) {
      const i = next++;
      const c = picked[i];
      counts.drafts[c.draft] = (counts.drafts[c.draft] ?? 0) + 1;
      const body = {
        messages: [{ role: 'user', content: 'Reply with one JSON document.' }],
        max_tokens: Number(max_tokens_str), temperature: 1, seed: 1000 + i,
        response_format: { type: 'json_schema', json_schema: { name: 'reply', schema: c.schema, strict: true } },
      };
      ++counts.sent;
      const t0 = Date.now();
      const r = await post('/v1/chat/completions', body);
      times.push({ file: c.file, s: (Date.now() - t0) / 1000 });
      if (r.status !== 200) {
        ++counts.http_errors;
        console.log(JSON.stringify({ fail: 'http', file: c.file, status: r.status, body: r.text.slice(0, 600) }));
        continue;
      }
      const reply = JSON.parse(r.text);
      const choice = reply.choices[0];
      counts.finish[choice.finish_reason] = (counts.finish[choice.finish_reason] ?? 0) + 1;
      counts.tokens += reply.usage.completion_tokens;
      const content = choice.message.content;
      let doc;
      try {
        doc = JSON.parse(content);
      } catch (e) {
        ++counts.invalid;
        console.log(JSON.stringify({ fail: 'not JSON', file: c.file, finish_reason: choice.finish_reason,
          reply: content, error: e.message }));
        continue;
      }
      if (c.validate(doc)) {
        ++counts.valid;
        continue;
      }
      const why = c.validate.errors.map((e) => e.keyword === 'format' &&
        known_difference(e.params.format, at(doc, e.instancePath)));
      if (why.every(Boolean)) {
        ++counts.known_differences;
        console.log(JSON.stringify({ note: 'known difference', file: c.file, differences: why,
          values: c.validate.errors.map((e) => at(doc, e.instancePath)) }));
      } else {
        ++counts.invalid;
        console.log(JSON.stringify({ fail: 'schema', file: c.file, draft: c.draft,
          finish_reason: choice.finish_reason, reply: content, errors: c.validate.errors }));
      }
    }
  }
  await Promise.all([...Array(Number(concurrency_str)).keys()].map(worker));
  times.sort((a, b) => b.s - a.s);
  console.log(JSON.stringify({ summary: { candidates: candidates.length, ajv_refused,
    usable: usable.length, picked: picked.length, ...counts, slowest: times.slice(0, 5) } }));
}

async function client() {
  const { default: OpenAI } = await import(path.join(modules, 'openai/index.mjs'));
  return new OpenAI({ baseURL: url + '/v1', apiKey: 'x' });
}

async function zod() {
  const { zodResponseFormat } = await import(path.join(modules, 'openai/helpers/zod.mjs'));
  const { z } = await import(path.join(modules, 'zod/lib/index.mjs'));
  const c = await client();
  // bounded, so that the document ends before max_tokens and the reply's finish_reason is
  // "stop": parse() throws LengthFinishReasonError on "length", and a model with random
  // weights never ends an unbounded string or array by itself
  const Person = z.object({ name: z.string().max(16), age: z.number().int(),
    tags: z.array(z.enum(['a', 'b'])).max(3) });
  const format = zodResponseFormat(Person, 'person');
  const parsed = [];
  for (const seed of [1, 2, 3]) {
    const r = await c.beta.chat.completions.parse({
      model: 'demo', messages: [{ role: 'user', content: 'Describe a person.' }],
      response_format: format, max_tokens: 400, temperature: 1, seed,
    });
    const m = r.choices[0].message;
    const check = Person.safeParse(m.parsed);
    if (!check.success || m.refusal) {
      console.log(JSON.stringify({ fail: 'zod', seed, content: m.content, parsed: m.parsed,
        refusal: m.refusal, errors: check.error?.issues }));
    }
    parsed.push({ seed, finish_reason: r.choices[0].finish_reason, tokens: r.usage.completion_tokens,
      parsed: m.parsed });
  }
  console.log(JSON.stringify({ summary: { sent_schema: format.json_schema, parsed } }));
}

async function tools() {
  const c = await client();
  const fns = [
    { name: 'get_weather', description: 'The weather in a city',
      parameters: { type: 'object', properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['c', 'f'] } },
        required: ['city', 'unit'], additionalProperties: false } },
    { name: 'add', description: 'The sum of two integers',
      parameters: { type: 'object', properties: { a: { type: 'integer' }, b: { type: 'integer' } },
        required: ['a', 'b'], additionalProperties: false } },
  ];
  const validators = Object.fromEntries(fns.map((f) => [f.name, compile(f.parameters).validate]));
  const calls = [];
  for (const seed of [1, 2, 3]) {
    let r;
    try {
      r = await c.chat.completions.create({
        model: 'demo', messages: [{ role: 'user', content: 'What is the weather in Paris?' }],
        tools: fns.map((f) => ({ type: 'function', function: f })), tool_choice: 'required',
        max_tokens: 96, temperature: 1, seed,
      });
    } catch (e) {
      console.log(JSON.stringify({ fail: 'request', seed, status: e.status, error: e.message }));
      continue;
    }
    const choice = r.choices[0];
    const call = choice.message.tool_calls?.[0];
    let args;
    let errors = null;
    try {
      args = JSON.parse(call?.function?.arguments);
    } catch (e) {
      errors = 'arguments are not JSON: ' + e.message;
    }
    const validate = validators[call?.function?.name];
    if (!errors && !validate) errors = 'no call to one of the tools';
    if (!errors && !validate(args)) errors = validate.errors;
    if (choice.finish_reason !== 'tool_calls' || errors) {
      console.log(JSON.stringify({ fail: 'tool call', seed, finish_reason: choice.finish_reason,
        message: choice.message, errors }));
    }
    calls.push({ seed, finish_reason: choice.finish_reason, call: call?.function });
  }
  console.log(JSON.stringify({ summary: { calls } }));
}

await { schemas, zod, tools }[mode]();
