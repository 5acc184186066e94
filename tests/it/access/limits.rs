//! Per-key limits, each at and over its edge: requests a second (429 with `Retry-After`), runs at
//! once, sandboxes, upload bytes; and each key's figures in `/metrics`.

use std::time::Duration;

use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::json;

use super::{client_of, code, create_key, get, post, run, send};
use crate::common::{TestServer, patience};

#[tokio::test]
async fn a_burst_over_the_keys_rate_gets_429_with_retry_after() {
    let server = TestServer::spawn().await;
    let key = client_of(&create_key(&server, "slow", &["--rate", "3"]));
    let admin = client_of(&create_key(&server, "root", &["--role", "admin"]));
    // A second's worth at once is allowed (3); the next is over.
    for n in 0..3 {
        assert_eq!(get(&key, &server, "/files").await.0, 200, "request {n} is within the burst");
    }
    let response = key.get(server.url("/files")).send().await.unwrap();
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let reply: serde_json::Value = response.json().await.unwrap();
    assert_eq!(code(&reply), "rate_limited");
    assert!(reply["error"]["message"].as_str().unwrap().contains("\"slow\""), "{reply}");
    // Another key is not slowed by it.
    assert_eq!(get(&admin, &server, "/files").await.0, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(get(&key, &server, "/files").await.0, 200, "the bucket refills at the rate");

    let metrics = admin.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("tracebox_key_rate_limited_total{key=\"slow\"} 1"), "{metrics}");
    assert!(metrics.contains("tracebox_key_limit_rate_per_sec{key=\"slow\"} 3"), "{metrics}");
    assert!(metrics.contains("tracebox_key_requests_total{key=\"slow\"} 5"), "{metrics}");
    let user = client_of(&create_key(&server, "user", &[]));
    let (status, reply) = get(&user, &server, "/metrics").await;
    assert_eq!((status, code(&reply)), (403, "forbidden"), "a user key does not read every key's figures");
}

#[tokio::test]
async fn runs_at_once_are_held_to_the_keys_limit() {
    let server = TestServer::spawn().await;
    let key = create_key(&server, "one", &["--max-concurrent-runs", "1"]);
    let client = client_of(&key);
    let long = {
        let (client, url) = (client.clone(), server.url("/execute"));
        tokio::spawn(async move {
            client.post(url).json(&json!({"code": "import time; time.sleep(3)"})).send().await.unwrap().status()
        })
    };
    // Wait until it is going.
    let admin = client_of(&create_key(&server, "root", &["--role", "admin"]));
    let deadline = tokio::time::Instant::now() + patience();
    loop {
        let metrics = admin.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
        if metrics.contains("tracebox_key_runs_active{key=\"one\"} 1") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the run never started: {metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = client.post(server.url("/execute")).json(&json!({"code": "1"})).send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    let reply: serde_json::Value = response.json().await.unwrap();
    assert_eq!(code(&reply), "too_many_runs", "{reply}");
    assert_eq!(long.await.unwrap(), 200);
    run(&client, &server, "print('one at a time is fine')").await;
}

#[tokio::test]
async fn a_tenant_holds_no_more_sandboxes_than_its_key_allows() {
    let server = TestServer::spawn().await;
    let client = client_of(&create_key(&server, "two", &["--max-sandboxes", "2"]));
    let (a, b) =
        (post(&client, &server, "/sandboxes", json!({})).await, post(&client, &server, "/sandboxes", json!({})).await);
    assert_eq!((a.0, b.0), (201, 201), "up to the limit: {} {}", a.1, b.1);
    let (status, reply) = post(&client, &server, "/sandboxes", json!({})).await;
    assert_eq!((status, code(&reply)), (429, "sandbox_limit"), "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("2 sandboxes"), "{reply}");
    let a = a.1["sandbox_id"].as_str().unwrap().to_owned();
    assert_eq!(send(&client, &server, Method::DELETE, &format!("/sandboxes/{a}"), None).await.0, 204);
    let (status, c) = post(&client, &server, "/sandboxes", json!({})).await;
    assert_eq!(status, 201, "a deleted sandbox frees its place: {c}");
    post(&client, &server, "/sandboxes/cleanup", json!({})).await;
}

async fn upload(client: &reqwest::Client, server: &TestServer, name: &str, bytes: usize) -> (u16, serde_json::Value) {
    let form = Form::new().part("file", Part::bytes(vec![b'x'; bytes]).file_name(name.to_owned()));
    let response = client.post(server.url("/upload")).multipart(form).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_tenants_uploads_stay_within_its_keys_quota() {
    let server = TestServer::spawn().await;
    let client = client_of(&create_key(&server, "small", &["--upload-quota", "1000"]));
    let other = client_of(&create_key(&server, "big", &[]));
    assert_eq!(upload(&client, &server, "a.bin", 600).await.0, 200);
    assert_eq!(upload(&client, &server, "b.bin", 400).await.0, 200, "exactly at the quota");
    let (status, reply) = upload(&client, &server, "c.bin", 1).await;
    assert_eq!((status, code(&reply)), (413, "upload_quota_exceeded"), "one byte over: {reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("1000 bytes"), "{reply}");
    assert_eq!(upload(&other, &server, "c.bin", 5000).await.0, 200, "another tenant's quota is its own");
    assert_eq!(send(&client, &server, Method::DELETE, "/files/a.bin", None).await.0, 204);
    assert_eq!(upload(&client, &server, "c.bin", 600).await.0, 200, "a deleted file frees its bytes");
}

#[tokio::test]
async fn racing_overwrites_give_back_a_files_bytes_once() {
    let server = TestServer::spawn().await;
    let client = client_of(&create_key(&server, "racer", &["--upload-quota", "1000"]));
    assert_eq!(upload(&client, &server, "y.bin", 300).await.0, 200);
    assert_eq!(upload(&client, &server, "x.bin", 300).await.0, 200);
    // Ten overwrites of x.bin with one byte at once: the 300 bytes it held come back once.
    let overwrites = (0..10).map(|_| {
        let (client, url) = (client.clone(), server.url("/upload?overwrite=true"));
        tokio::spawn(async move {
            let form = Form::new().part("file", Part::bytes(vec![b'x']).file_name("x.bin"));
            client.post(url).multipart(form).send().await.unwrap().status().as_u16()
        })
    });
    for overwrite in overwrites.collect::<Vec<_>>() {
        assert_eq!(overwrite.await.unwrap(), 200);
    }
    // 301 bytes held: 699 more fit, 700 do not.
    let (status, reply) = upload(&client, &server, "z.bin", 700).await;
    assert_eq!((status, code(&reply)), (413, "upload_quota_exceeded"), "{reply}");
    assert_eq!(upload(&client, &server, "z.bin", 699).await.0, 200, "exactly at the quota");
}

#[tokio::test]
async fn a_batch_runs_no_more_items_at_once_than_its_keys_runs_and_a_setup_counts_as_one() {
    let server = TestServer::spawn().await;
    let client = client_of(&create_key(&server, "two", &["--max-concurrent-runs", "2"]));
    let admin = client_of(&create_key(&server, "root", &["--role", "admin"]));
    let items: Vec<_> = (0..4).map(|n| json!({"id": format!("i{n}"), "code": "import time; time.sleep(2)"})).collect();
    let batch = {
        let (client, url) = (client.clone(), server.url("/batch"));
        tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({"items": items, "concurrency": 4}))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
    };
    let runs = |metrics: &str, name: &str| -> u64 {
        metrics.lines().find_map(|line| line.strip_prefix(name)?.trim().parse().ok()).unwrap_or(0)
    };
    let mut most = 0;
    let deadline = tokio::time::Instant::now() + patience();
    while !batch.is_finished() {
        let metrics = admin.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
        most = most.max(runs(&metrics, "tracebox_runs_active"));
        assert_eq!(runs(&metrics, "tracebox_key_runs_active{key=\"two\"}").max(2), 2, "{metrics}");
        assert!(tokio::time::Instant::now() < deadline, "the batch never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = batch.await.unwrap();
    assert!(text.contains("\"type\":\"done\""), "{text}");
    assert_eq!(most, 2, "two items at a time, as the key allows");

    // A sandbox's setup commands are runs of the key too.
    let making = {
        let (client, url) = (client.clone(), server.url("/sandboxes"));
        tokio::spawn(async move {
            let body = json!({"setup": ["sleep 3"]});
            client.post(url).json(&body).send().await.unwrap().json::<serde_json::Value>().await.unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (first, second) = (
        post(&client, &server, "/execute", json!({"code": "import time; time.sleep(2)"})),
        post(&client, &server, "/execute", json!({"code": "1"})),
    );
    let (first, second) = tokio::join!(first, second);
    let statuses = [first.0, second.0];
    assert!(statuses.contains(&429), "with the setup going, only one more run fits: {statuses:?}");
    let made = making.await.unwrap();
    let id = made["sandbox_id"].as_str().expect("the sandbox was made").to_owned();
    send(&client, &server, Method::DELETE, &format!("/sandboxes/{id}"), None).await;
}
