#!/usr/bin/env node
import "./threadpool.js";
import { ignoreClosedPipes } from "./closed-pipes.js";
import { main } from "./main.js";

ignoreClosedPipes();
await main();
