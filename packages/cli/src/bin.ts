#!/usr/bin/env node
import "./threadpool.js";
import { main } from "./main.js";

await main();
