// A small offline reader for the OpenAPI schema: FastAPI's Swagger page loads its code from
// a CDN, which a laptop without internet (or these build machines) cannot reach.
"use strict";

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function schemaText(schema, spec) {
  if (!schema) return "";
  if (schema.$ref) return schema.$ref.split("/").pop();
  if (schema.anyOf) return schema.anyOf.map((s) => schemaText(s, spec)).join(" | ");
  if (schema.type === "array") return `${schemaText(schema.items, spec)}[]`;
  return schema.format ? `${schema.type} (${schema.format})` : (schema.type || "any");
}

async function main() {
  const root = document.getElementById("endpoints");
  let spec;
  try {
    spec = await (await fetch("/openapi.json")).json();
  } catch (err) {
    root.replaceChildren(el("p", `could not load /openapi.json: ${err.message}`, "status error"));
    return;
  }
  root.replaceChildren();
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const box = el("div", undefined, "endpoint");
      const h = el("h3");
      h.append(el("span", method.toUpperCase(), "method"), document.createTextNode(path));
      box.append(h, el("p", op.summary || ""));
      if (op.description) box.append(el("p", op.description, "muted"));
      const rows = [];
      for (const p of op.parameters || []) {
        rows.push([`${p.name} (${p.in})`, schemaText(p.schema, spec), (p.description || "") + (p.required ? " [required]" : "")]);
      }
      if (op.requestBody) {
        for (const [type, c] of Object.entries(op.requestBody.content || {})) rows.push(["body", type, schemaText(c.schema, spec)]);
      }
      for (const [code, r] of Object.entries(op.responses || {})) rows.push([`→ ${code}`, Object.keys(r.content || {}).join(", "), r.description || ""]);
      if (rows.length) {
        const table = el("table");
        for (const cells of rows) {
          const tr = el("tr");
          cells.forEach((c) => tr.append(el("td", c)));
          table.append(tr);
        }
        box.append(table);
      }
      root.append(box);
    }
  }
}

document.addEventListener("DOMContentLoaded", main);
