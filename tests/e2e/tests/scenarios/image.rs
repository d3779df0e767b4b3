//! What ships is what is tested: the controller started from the image scripts/image
//! makes (its own binary, from its own root filesystem, as its own user, with its own
//! environment), under the chart's arguments and RBAC, makes a binding's role.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use podidentity_e2e::Scenario;
use podidentity_e2e::image::{Image, archive_from_env};
use podidentity_e2e::operator::{Launch, Operator, Replica};
use serde_json::json;

pub async fn the_controller_from_the_image_runs_as_its_user_and_makes_a_role(s: Scenario) {
    let Some(archive) = archive_from_env() else {
        return;
    };
    let image = Image::unpack(&archive, &s.dir.join("image")).expect("unpack the image");
    // The image config, as a runtime reads it.
    assert_eq!((image.uid, image.gid), (65532, 65532), "a non-root user");
    assert_eq!(image.args, ["/podidentity"], "the binary is the entrypoint");
    assert_eq!(image.cwd, "/");
    assert!(
        image
            .env
            .iter()
            .any(|e| e == "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"),
        "{:?}",
        image.env
    );
    let bundle = std::fs::read_to_string(image.rootfs.join("etc/ssl/certs/ca-certificates.crt"))
        .expect("the CA bundle");
    assert!(bundle.matches("BEGIN CERTIFICATE").count() > 100);

    let rendered = s.install(json!({})).await;
    let mut controller = Operator::controller_from(
        &s.cluster,
        &rendered,
        &s.dir,
        &Replica::named(&format!("{}-image", s.tag)),
        Launch::Image(&image),
    )
    .await
    .expect("start the controller from the image");
    controller.wait_ready(Duration::from_secs(60)).await;

    // The process is the image's binary, in the image's root, as its user.
    let pid = controller.process.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status");
    let uids: Vec<&str> = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(uids, ["65532"; 4], "real, effective, saved and fs uid");
    let root = std::fs::read_link(format!("/proc/{pid}/root")).expect("its root");
    assert_eq!(
        root,
        image.rootfs.canonicalize().expect("the root filesystem")
    );
    let exe = std::fs::metadata(format!("/proc/{pid}/exe")).expect("its binary");
    let shipped = std::fs::metadata(image.rootfs.join("podidentity")).expect("/podidentity");
    assert_eq!(
        (exe.dev(), exe.ino()),
        (shipped.dev(), shipped.ino()),
        "it runs the image's /podidentity"
    );

    let ns = s.namespace("image").await;
    s.create_service_account(&ns, "app", json!({})).await;
    s.create_binding(
        &ns,
        "app",
        json!({"serviceAccountName": "app", "permissions": {"statements": [
            {"actions": ["s3:GetObject"], "resources": ["arn:aws:s3:::image-test/*"]}]}}),
    )
    .await;
    let arn = s.wait_role_arn(&ns, "app").await;
    assert!(
        s.iam_role(&s.role_name(&ns, "app")).await.is_some(),
        "{arn} is in IAM"
    );
}
