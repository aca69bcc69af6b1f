#!/usr/bin/env node
// Validate an AsyncAPI document with the official parser (@asyncapi/parser).
//
// Usage: node tests/tools/validate-asyncapi.cjs FILE...
// Prints "FILE: valid AsyncAPI <version> document" for each valid file, and for each invalid
// one every diagnostic of severity error ("FILE: error: <code>: <path>: <message>", on stdout)
// and "FILE: invalid AsyncAPI document: N error(s)". Other diagnostics go to stderr.
// Exit codes: 0 all valid, 1 some invalid, 2 usage error or unreadable file.
"use strict";

const fs = require("node:fs");
const { Parser, DiagnosticSeverity } = require("@asyncapi/parser");

const SEVERITY = ["error", "warning", "information", "hint"];

function format(file, diagnostic) {
  const where = (diagnostic.path || []).join(".") || "<root>";
  const level = SEVERITY[diagnostic.severity] || String(diagnostic.severity);
  return `${file}: ${level}: ${diagnostic.code}: ${where}: ${diagnostic.message}`;
}

async function validate(parser, file) {
  let text;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (error) {
    process.stderr.write(`cannot read ${file}: ${error.message}\n`);
    return 2;
  }
  const { document, diagnostics } = await parser.parse(text, { source: file });
  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
  for (const diagnostic of diagnostics) {
    if (diagnostic.severity !== DiagnosticSeverity.Error) {
      process.stderr.write(format(file, diagnostic) + "\n");
    }
  }
  for (const diagnostic of errors) {
    process.stdout.write(format(file, diagnostic) + "\n");
  }
  if (document === undefined || errors.length > 0) {
    process.stdout.write(`${file}: invalid AsyncAPI document: ${errors.length} error(s)\n`);
    return 1;
  }
  process.stdout.write(`${file}: valid AsyncAPI ${document.version()} document\n`);
  return 0;
}

async function main(argv) {
  if (argv.length === 0) {
    process.stderr.write("usage: validate-asyncapi.cjs FILE...\n");
    return 2;
  }
  const parser = new Parser();
  let code = 0;
  for (const file of argv) {
    code = Math.max(code, await validate(parser, file));
  }
  return code;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`${error.stack || error}\n`);
    process.exit(2);
  },
);
